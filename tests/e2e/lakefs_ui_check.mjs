// Drives Debian's headless Chromium (via playwright-core, no browser download) through lakeFS's
// web UI and on into Dagster's: log in, the repository's branches, the publish commit with its
// metadata, its "Open Dagster UI" button followed to the run's page; then the other way, the
// lakeFS links a materialization carries. Saves a screenshot of every page and prints a JSON
// summary on stdout; the Python test (test_lakefs_ui.py) makes the assertions. Only loopback
// requests are let through. Every wait is on a page condition, bounded by timeoutMs.
//
// usage: node lakefs_ui_check.mjs '<json>' with
//   {lakefsUrl, accessKeyId, secretAccessKey, repository, commitId, runId, jobName,
//    materializationLinks: {name: url}, outDir, timeoutMs}
// Progress goes to stderr; the exit code is non-zero only when the browser itself failed.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const args = JSON.parse(process.argv[2]);
const timeout = args.timeoutMs ?? 120000;
const executablePath = process.env.DFP_CHROMIUM ?? '/usr/bin/chromium';
const log = (msg) => process.stderr.write(`[lakefs_ui_check] ${msg}\n`);

// Without these flags (and a fresh profile) Chromium keeps calling out to the network.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

const summary = { chromium: null, pages: {}, errors: [], blocked: [] };

async function waitUntil(page, fn, arg, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 250 });
    return true;
  } catch (err) {
    const reason = err.message.split('\n')[0];
    log(`gave up waiting for ${what}: ${reason}`);
    summary.errors.push(`waiting for ${what} (up to ${timeout} ms): ${reason}`);
    return false;
  }
}

async function shot(page, name, extra = {}) {
  const file = path.join(args.outDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  summary.pages[name] = {
    url: page.url(),
    title: await page.title(),
    text: await page.evaluate(() => document.body.innerText),
    screenshot: file,
    ...extra,
  };
  log(`${name}: ${page.url()}`);
}

const bodyHas = (needles) => needles.every((n) => document.body.innerText.includes(n));

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfp-e2e-chromium-'));
fs.mkdirSync(args.outDir, { recursive: true });
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1600, height: 1000 },
  });
  summary.chromium = context.browser()?.version() ?? null;
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (['data:', 'blob:'].includes(url.protocol) || LOOPBACK.has(url.hostname)) {
      return route.continue();
    }
    summary.blocked.push(url.origin);
    return route.abort();
  });
  // Dagster's "Join the Dagster community" dialog would cover the run page.
  await context.addInitScript(() => {
    try {
      window.localStorage.setItem('communityNux', JSON.stringify('1'));
    } catch {
      // storage unavailable: the dialog then just shows up in the screenshot
    }
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (err) => summary.errors.push(`page error: ${err.message}`));
  const repo = `${args.lakefsUrl}/repositories/${encodeURIComponent(args.repository)}`;

  // 1. Log in with the access key id and secret (the login form's #username / #password).
  await page.goto(`${args.lakefsUrl}/auth/login`, { timeout });
  await page.waitForSelector('#username', { timeout });
  await shot(page, 'lakefs-login');
  await page.fill('#username', args.accessKeyId);
  await page.fill('#password', args.secretAccessKey);
  await page.click('button[type="submit"]');
  await page.waitForURL((url) => !url.pathname.startsWith('/auth/login'), { timeout });
  await waitUntil(page, bodyHas, [args.repository], 'the repository in the repositories list');
  await shot(page, 'lakefs-repositories');

  // 2. The repository's branches: each branch name is its row's link.
  await page.goto(`${repo}/branches`, { timeout });
  await waitUntil(
    page,
    () => document.querySelectorAll('.list-group-item h6 a, h6 a').length > 0,
    null,
    'the branch list',
  );
  const branches = await page.evaluate(() =>
    [...document.querySelectorAll('h6 a')].map((a) => a.innerText.trim()).filter(Boolean),
  );
  await shot(page, 'lakefs-branches', { branches });

  // 3. The publish commit: its metadata table names the run, with the Dagster link button.
  await page.goto(`${repo}/commits/${encodeURIComponent(args.commitId)}`, { timeout });
  await waitUntil(page, bodyHas, [args.runId, 'Open Dagster UI'], 'the commit metadata');
  const metadata = await page.evaluate(() =>
    Object.fromEntries(
      [...document.querySelectorAll('tr')]
        .map((tr) => [...tr.querySelectorAll('td')].map((td) => td.innerText.trim()))
        .filter((cells) => cells.length === 2),
    ),
  );
  await shot(page, 'lakefs-commit', { metadata });

  // 4. Follow "Open Dagster UI": the run's page in Dagster.
  const button = page.getByRole('button', { name: 'Open Dagster UI' });
  await button.click();
  await page.waitForURL((url) => url.pathname.includes(`/runs/${args.runId}`), { timeout });
  const runShown = await waitUntil(
    page,
    bodyHas,
    [args.runId.slice(0, 8), args.jobName, 'Success'],
    "the run's id, job and status on its page",
  );
  // Its event log too (the first event, RUN_START, is at the top of the list).
  const logsShown = await waitUntil(
    page,
    (job) => {
      const text = document.body.innerText;
      return !text.includes('Loading run logs') && text.includes(`execution of run for "${job}"`);
    },
    args.jobName,
    "the run's event log",
  );
  await shot(page, 'dagster-run', { runShown, logsShown });

  // 5. The other way: the lakeFS links of a materialization open their pages.
  for (const [name, url] of Object.entries(args.materializationLinks ?? {})) {
    await page.goto(url, { timeout });
    const expected = args.materializationExpect?.[name] ?? [];
    const shown = await waitUntil(page, bodyHas, expected, `${name}: ${expected.join(', ')}`);
    await shot(page, `lakefs-${name.replaceAll('_', '-')}`, { shown });
  }
} catch (err) {
  summary.errors.push(`browser failure: ${err.stack ?? err}`);
  process.exitCode = 1;
} finally {
  await context?.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
  summary.blocked = [...new Set(summary.blocked)];
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}
