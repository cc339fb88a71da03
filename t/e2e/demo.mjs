// End-to-end: the README's demo in a real browser.  Debian's Chromium,
// driven by playwright-core, opens the chat page, whose WebSocket goes
// through the module to the echo upstream; the browser offers
// permessage-deflate, which the demo accepts (ws_proxy_deflate on): the
// hook sees the inflated text and its rewrites reach the browser
// compressed.  Chromium masks its frames itself.  Prints TAP.

import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { done, launch, ok, sleep, stop, waitUp } from './browser.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const port = process.env.DEMO_PORT || '18090';
// the target's work folder (util/run-tests), so that targets side by side
// keep their own demo
const work = process.env.TEST_NGINX_WORKDIR || join(root, 'build');
const prefix = join(work, 'demo');
const shot = join(work, 'e2e', 'demo.png');
const demo = spawn(join(root, 'util', 'demo'), [], {
  env: { ...process.env, DEMO_PORT: port, DEMO_PREFIX: prefix,
         DEMO_UPSTREAM_PORT: process.env.DEMO_UPSTREAM_PORT || '18091' },
  stdio: ['ignore', 'ignore', 'inherit'],
});

let browser;
try {
  await waitUp(`http://127.0.0.1:${port}/`);
  browser = await launch();

  const page = await browser.newPage();
  const offered = [];
  page.on('websocket', (ws) => offered.push(ws.url()));
  await page.goto(`http://127.0.0.1:${port}/`);

  const log = page.locator('#log');
  await page.waitForFunction(() =>
    document.getElementById('log').textContent.includes('connected to /hook'));
  ok(true, 'the page connects through the module to /hook');
  const opened = await log.textContent();
  ok(/connected to \/hook \(extensions: permessage-deflate[^)]*\)/.test(opened),
     `Chromium negotiated permessage-deflate, the page shows ws.extensions (${
       (opened.match(/extensions: [^)]*/) || ['none'])[0]})`);

  async function say(text) {
    await page.fill('#msg', text);
    await page.press('#msg', 'Enter');
  }

  await say('hello');
  await page.waitForFunction(() =>
    document.getElementById('log').textContent.includes('< [via proxy] echo: hello'),
    null, { timeout: 5000 });
  ok(true, 'a message comes back tagged by the hook');

  await say('this is bad');
  await say('my secret plan');
  await say('bye');
  await page.waitForFunction(() =>
    document.getElementById('log').textContent.includes('echo: bye'),
    null, { timeout: 5000 });
  const text = await log.textContent();
  ok(text.includes('< [via proxy] echo: this is ***'),
     'the hook rewrites "bad"');
  ok(!text.includes('< [via proxy] echo: my secret'),
     'the hook drops a message with "secret"');
  ok(text.includes('dropped by the proxy\'s hook: my secret plan')
     && await page.locator('#log .drop').count() === 1,
     'the page shows the dropped message as dropped');

  mkdirSync(dirname(shot), { recursive: true });
  await page.screenshot({ path: shot, fullPage: true });
  ok(true, `screenshot in ${shot}`);

  // the plain path: no hook, frames forwarded by C only
  await page.check('input[value="/ws"]');
  await page.click('#connect');
  await page.waitForFunction(() =>
    document.getElementById('log').textContent.includes('connected to /ws'));
  await say('plain é ✓');
  await page.waitForFunction(() =>
    document.getElementById('log').textContent.includes('< echo: plain é ✓'),
    null, { timeout: 5000 });
  ok(true, 'UTF-8 text round-trips through the hook-less path');
  const plain = await log.textContent();
  ok(/connected to \/ws \(extensions: permessage-deflate/.test(plain),
     'the hook-less path negotiates permessage-deflate too');

  // a large message from the browser (64 KiB, masked by Chromium)
  const big = await page.evaluate(() => new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}/ws`);
    const payload = 'x'.repeat(65536);
    ws.onopen = () => ws.send(payload);
    ws.onmessage = (e) => { resolve(e.data.length); ws.close(1000, 'done'); };
    ws.onerror = () => resolve(-1);
  }));
  ok(big === 65536 + 'echo: '.length, `a 64 KiB message comes back (${big})`);

  // compressed both ways through the hook: a large text, changed by it
  const hooked = await page.evaluate(() => new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}/hook`);
    const words = [];
    for (let i = 0; i < 20000; i++) words.push(i % 7 ? 'good' : 'bad');
    const payload = words.join(' ');
    ws.onopen = () => ws.send(payload);
    ws.onmessage = (e) => {
      const want = '[via proxy] echo: ' + payload.split('bad').join('***');
      resolve({ ext: ws.extensions, same: e.data === want,
                len: e.data.length });
      ws.close(1000, 'done');
    };
    ws.onerror = () => resolve({ ext: ws.extensions, same: false, len: -1 });
  }));
  ok(/^permessage-deflate/.test(hooked.ext) && hooked.same,
     `a 100 KB compressed message rewritten by the hook arrives inflated ` +
     `and exact (${hooked.ext}; ${hooked.len} chars)`);

  // the browser closes: the session ends with a close handshake
  const code = await page.evaluate(() => new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}/hook`);
    ws.onopen = () => ws.close(4000, 'browser leaves');
    ws.onclose = (e) => resolve(e.code);
  }));
  ok(code === 4000, `close code echoed back to the browser (${code})`);

  // a close code the page meets is explained
  await page.evaluate(() => ws.close(1000, 'bye'));
  await page.waitForFunction(() =>
    document.getElementById('log').textContent
      .includes('closed: 1000 "bye" (normal closure)'),
    null, { timeout: 5000 });
  ok(true, 'the page explains a close code');

  await page.close();
  await sleep(300);

  const access = readFileSync(join(prefix, 'logs', 'access.log'),
                              'utf8');
  ok(/GET \/hook HTTP\/1.1" 101 client_frames=\d+ .*closed_by=client client_close=4000/.test(access),
     'the access log tells the sessions\' story');
  ok(/GET \/hook HTTP\/1.1" 101 .*client_deflate="permessage-deflate[^"]*"/.test(access),
     '$ws_proxy_client_deflate in the access log');

  const errors = readFileSync(join(prefix, 'logs', 'error.log'),
                              'utf8');
  ok(!/\[(alert|crit|emerg)\]/.test(errors), 'no [alert], [crit] or [emerg]');
  ok(/dropping: my secret plan/.test(errors), 'the hook logged the drop');
} catch (e) {
  ok(false, `browser test: ${e.message}`);
} finally {
  if (browser) await browser.close();
  // nginx (util/demo execs it) is waited for: nothing outlives the test
  await stop(demo);
}

done();
