// What the browser scripts share: Debian's Chromium started headless with the project's flags,
// one line per check ("ok   name (N ms)" or "FAIL name (N ms): why"), a wait with a timeout,
// and the closing "N passed, M failed" line that the Rust tests look for.
import { chromium } from "playwright-core";

/** Starts /usr/bin/chromium (never a downloaded browser) in the modern headless mode. */
export function launchChromium() {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: false, // --headless=new below: the modern headless mode, as webdriver.json
    args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
      "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
}

/** [name, ok] of every check so far. */
export const results = [];

/** Throws `msg` unless `cond`. */
export function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

/** Runs one check and records it; a thrown error fails it. */
export async function check(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push([name, true]);
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push([name, false]);
    console.log(`FAIL ${name} (${Date.now() - t0} ms): ${e.message}`);
  }
}

/** Polls `fn` every `stepMs` until it returns something truthy, for at most `ms`. */
export async function waitFor(fn, ms, what, stepMs = 200) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** Records an error that escaped every check. */
export function unexpected(e) {
  results.push(["unexpected error", false]);
  console.log(`FAIL unexpected error: ${e.stack || e}`);
}

/**
 * Prints the closing line (after the page console's last lines when a check failed) and exits
 * with 1 when any check failed.
 */
export function finish(consoleLines, seconds) {
  const failed = results.filter(([, ok]) => !ok).length;
  if (failed && consoleLines.length) console.log(`console (last lines):\n  ${consoleLines.slice(-20).join("\n  ")}`);
  const took = seconds === undefined ? "" : ` (${seconds} s)`;
  console.log(`${results.length - failed} passed, ${failed} failed${took}`);
  process.exit(failed ? 1 : 0);
}
