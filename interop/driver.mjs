// Opens the interoperability test's page in headless Chromium, waits until
// the page's window.results.done (or its error, or a timeout) and prints
// window.results as JSON on standard output. Browser console lines go to
// standard error.
//
//	node driver.mjs <page URL> [timeout ms]
//
// Exit status: 0 when the page reported done, 1 otherwise.
import { createRequire } from 'node:module';

// playwright-core is installed with the web app's packages, in web/.
const require = createRequire(new URL('./web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [pageURL, timeoutArg] = process.argv.slice(2);
if (!pageURL) {
  console.error('usage: node driver.mjs <page URL> [timeout ms]');
  process.exit(2);
}
const timeout = Number(timeoutArg ?? 60000);

let browser;
async function close() {
  const b = browser;
  browser = undefined;
  if (b) await b.close().catch(() => {});
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => close().finally(() => process.exit(1)));
}

let ok = false;
let results = null;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    timeout,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-features=WebRtcHideLocalIpsWithMdns',
    ],
  });
  const page = await browser.newPage();
  page.on('console', (m) => console.error(`browser ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => console.error(`browser error: ${e}`));
  await page.goto(pageURL, { timeout });
  try {
    await page.waitForFunction(() => window.results && (window.results.done || window.results.error), null, {
      timeout,
      polling: 50,
    });
  } catch (err) {
    console.error(`driver: ${err.message.split('\n')[0]}`);
  }
  results = await page.evaluate(() => window.results ?? null);
  ok = Boolean(results?.done);
} catch (err) {
  console.error(`driver: ${err.stack ?? err}`);
} finally {
  await close();
}
process.stdout.write(JSON.stringify(results) + '\n');
process.exit(ok ? 0 : 1);
