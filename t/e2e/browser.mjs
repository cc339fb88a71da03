// What the browser tests share (t/e2e/demo.mjs, dashboard.mjs,
// limit_browser.mjs): TAP assertions and the plan at the end, a sleep,
// waiting until nginx answers, Debian's Chromium launched headless, and an
// nginx child stopped and waited for, so that nothing outlives a test.

import { chromium } from 'playwright-core';

let n = 0, failed = 0;

export function ok(cond, name) {
  n++;
  if (!cond) failed++;
  console.log(`${cond ? '' : 'not '}ok ${n} - ${name}`);
  return cond;
}

export function skip(name, why) {
  n++;
  console.log(`ok ${n} - ${name} # skip ${why}`);
}

// the plan, and the exit status: 1 when an assertion failed
export function done() {
  console.log(`1..${n}`);
  process.exit(failed ? 1 : 0);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// until url answers 2xx, 5 s at most (the test's own steps then fail)
export async function waitUp(url) {
  for (let i = 0; i < 50; i++) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch (e) { /* not up yet */ }
    await sleep(100);
  }
}

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic',
           '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
}

// QUIT to nginx (a child in the foreground), KILL after 10 s; waits for it
export async function stop(child) {
  const exited = new Promise((r) => child.once('exit', r));
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGQUIT');
    const t = setTimeout(() => child.kill('SIGKILL'), 10000);
    await exited;
    clearTimeout(t);
  }
}
