// Drives Debian's headless Chromium (via playwright-core, no browser download) through the UI
// that `dagster dev` serves: the global asset graph with every group expanded, each asset
// group's lineage page, and one asset's partitions view. Saves screenshots and prints a JSON
// summary on stdout; the Python test (test_ui.py) makes the assertions. Only loopback requests
// are let through.
//
// usage: node ui_check.mjs '<json>' with
//   {baseUrl, outDir, assetsByGroup: {group: [asset names as the UI shows them]}, location,
//    partitionAsset: [key path], partitions: [keys], timeoutMs}
// Progress goes to stderr; the exit code is non-zero only when the browser itself failed.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const args = JSON.parse(process.argv[2]);
const timeout = args.timeoutMs ?? 120000;
const executablePath = process.env.DFP_CHROMIUM ?? '/usr/bin/chromium';
const log = (msg) => process.stderr.write(`[ui_check] ${msg}\n`);

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

// Asset nodes in the graph: the full name is the name element's tooltip (its text may be
// truncated), and the node's "Partitions" row links to the partitions view.
function readGraph() {
  const nodes = [];
  for (const nameEl of document.querySelectorAll('[class*="AssetNode_assetName"]')) {
    const tipped = nameEl.querySelector('[data-tooltip]');
    const name = (tipped?.getAttribute('data-tooltip') || nameEl.innerText || '').trim();
    // The node's HTML root (an SVG foreignObject has no innerText).
    const box =
      nameEl.closest('[class*="AssetNode_assetNodeContainer"]') ??
      nameEl.closest('foreignObject')?.firstElementChild ??
      nameEl.parentElement;
    const link = box?.querySelector('a[href*="view=partitions"]');
    nodes.push({
      name,
      partitions: link ? link.innerText.trim() : null,
      text: (box?.innerText ?? '')
        .split('\n')
        .map((line) => line.trim())
        .filter(Boolean),
    });
  }
  return nodes;
}

// Partition keys listed in the asset's partitions view (full key in the cell's title).
function readPartitionKeys() {
  const keys = new Set();
  for (const row of document.querySelectorAll('[class*="VirtualizedTable_row"]')) {
    for (const el of row.querySelectorAll('[title], [data-tooltip]')) {
      const key = el.getAttribute('title') ?? el.getAttribute('data-tooltip');
      if (key) keys.add(key.trim());
    }
  }
  return [...keys];
}

async function waitUntil(page, fn, arg, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout, polling: 500 });
    return null;
  } catch (err) {
    const reason = err.message.split('\n')[0];
    log(`gave up waiting for ${what}: ${reason}`);
    return `waiting for ${what} (up to ${timeout} ms): ${reason}`;
  }
}

const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfp-e2e-chromium-'));
fs.mkdirSync(args.outDir, { recursive: true });
const summary = { chromium: null, graph: {}, partitions: {}, errors: [], blocked: [] };
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: CHROMIUM_ARGS,
    // Wide, for the overview screenshot of the global graph.
    viewport: { width: 3400, height: 1300 },
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
  // The "Join the Dagster community" dialog on localhost would cover the graph.
  await context.addInitScript(() => {
    try {
      window.localStorage.setItem('communityNux', JSON.stringify('1'));
    } catch {
      // storage unavailable: the dialog then just shows up in the screenshot
    }
  });
  // The readers, for the wait conditions that run in the page.
  await context.addInitScript({
    content: `window.__dfp = {readGraph: ${readGraph}, readPartitionKeys: ${readPartitionKeys}};`,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (err) => summary.errors.push(`page error: ${err.message}`));

  // 1. The global asset lineage, every group expanded: a screenshot for people. The graph
  // culls nodes outside the viewport, so it cannot show every asset once the graph outgrows
  // the window; step 2 checks them group by group. Group ids differ with the per-code-location
  // feature flag, so both spellings are passed (unknown ids are ignored).
  const groups = Object.keys(args.assetsByGroup).sort();
  const expanded = groups
    .flatMap((g) => [`global@global:${g}`, `__repository__@${args.location}:${g}`])
    .join(',');
  const graphUrl = `${args.baseUrl}/asset-groups?expanded=${encodeURIComponent(expanded)}`;
  log(`graph: ${graphUrl}`);
  await page.goto(graphUrl, { timeout });
  const overviewWait = await waitUntil(
    page,
    () => window.__dfp.readGraph().some((n) => n.partitions),
    null,
    'the global asset graph',
  );
  if (overviewWait) summary.errors.push(overviewWait);
  const graphShot = path.join(args.outDir, 'asset-graph.png');
  await page.screenshot({ path: graphShot, fullPage: true });
  summary.graph = { url: page.url(), title: await page.title(), screenshot: graphShot };

  // 2. Each group's lineage page: every asset of the group, with its partitions row (partition
  // counts arrive with the live data, after the layout).
  await page.setViewportSize({ width: 1600, height: 1000 });
  summary.groups = {};
  for (const group of groups) {
    const groupUrl = `${args.baseUrl}/locations/${args.location}/asset-groups/${encodeURIComponent(group)}/lineage`;
    log(`group: ${groupUrl}`);
    await page.goto(groupUrl, { timeout });
    const groupWait = await waitUntil(
      page,
      (assets) => {
        const nodes = window.__dfp.readGraph();
        return assets.every((a) => nodes.some((n) => n.name === a && n.partitions));
      },
      args.assetsByGroup[group],
      `the assets of group ${group} with their partition rows`,
    );
    if (groupWait) summary.errors.push(groupWait);
    const groupShot = path.join(args.outDir, `group-${group}.png`);
    await page.screenshot({ path: groupShot, fullPage: true });
    summary.groups[group] = {
      url: page.url(),
      nodes: await page.evaluate(() => window.__dfp.readGraph()),
      screenshot: groupShot,
    };
  }

  // 3. One asset's partitions view: the lakefs_branch partitions (branches) it lists.
  const assetPath = args.partitionAsset.map(encodeURIComponent).join('/');
  const partitionsUrl = `${args.baseUrl}/assets/${assetPath}?view=partitions`;
  log(`partitions: ${partitionsUrl}`);
  await page.goto(partitionsUrl, { timeout });
  const partitionsWait = await waitUntil(
    page,
    (partitions) => {
      const keys = new Set(window.__dfp.readPartitionKeys());
      return partitions.every((p) => keys.has(p));
    },
    args.partitions,
    'the partitions in the partitions view',
  );
  if (partitionsWait) summary.errors.push(partitionsWait);
  const partitionsShot = path.join(args.outDir, 'asset-partitions.png');
  await page.screenshot({ path: partitionsShot, fullPage: true });
  summary.partitions = {
    url: page.url(),
    keys: (await page.evaluate(readPartitionKeys)).sort(),
    screenshot: partitionsShot,
  };
} catch (err) {
  summary.errors.push(`browser failure: ${err.stack ?? err}`);
  process.exitCode = 1;
} finally {
  await context?.close();
  fs.rmSync(userDataDir, { recursive: true, force: true });
  summary.blocked = [...new Set(summary.blocked)];
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}
