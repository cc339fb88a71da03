// A browser client under a message rate, for t/e2e/limit_messages.py:
// Debian's Chromium (playwright-core) opens a WebSocket to the URL given,
// sends N messages at once (Chromium masks them itself) and times their
// echoes.  Prints one JSON line: { echoes: [...], times: [ms...] } or
// { error: "..." }.
//
//   node t/e2e/limit_browser.mjs ws://127.0.0.1:20020/ws?k=browser 30

import { launch } from './browser.mjs';

const [url, count] = process.argv.slice(2);
let browser;

try {
  browser = await launch();
  const page = await browser.newPage();
  const result = await page.evaluate(async ([url, n]) => {
    const ws = new WebSocket(url);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error('no connection'));
    });
    const echoes = [], times = [];
    const done = new Promise((resolve) => {
      ws.onmessage = (ev) => {
        echoes.push(ev.data);
        times.push(performance.now());
        if (echoes.length === n) resolve();
      };
      setTimeout(resolve, 20000);
    });
    for (let i = 0; i < n; i++) {
      ws.send(`browser m${i}:` + 'x'.repeat(i));
    }
    await done;
    ws.close(1000);
    return { echoes, times };
  }, [url, Number(count)]);
  console.log(JSON.stringify(result));
} catch (e) {
  console.log(JSON.stringify({ error: String(e) }));
} finally {
  if (browser) await browser.close();
}
