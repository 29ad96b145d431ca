// Browser test of semantic's web page, in a real chromium driven by playwright-core.
//
//   node tests/ui/ui.test.mjs --url http://127.0.0.1:PORT          (a server that is running)
//   node tests/ui/ui.test.mjs --binary target/release/semantic      (starts one on a free port)
//        [--model models/SmolLM2-135M-Instruct.Q4_1.gguf] [--artifacts DIR]
//        [--locked-url URL --key K --admin-key A]   (also: a server with keys asks for them)
//
// Opens every page, chats with two columns (both stream an answer; the second turn's badge is
// hot or warm, from the server's own report), runs the tiny scenario for one round, creates a
// session and runs a turn, checks the memory table lists the agents made, and saves a screenshot
// of every page at 1280×800 (and the chat at phone width) into the artifacts folder. Waits are on
// selectors and conditions with bounded timeouts, never fixed sleeps. Exit status 0 = pass.

import {spawn} from 'node:child_process';
import {mkdtempSync, mkdirSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join, dirname, resolve} from 'node:path';
import {fileURLToPath} from 'node:url';
import {chromium} from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const artifacts = resolve(arg('artifacts', join(here, 'artifacts')));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TURN_MS = 120_000;
const RUN_MS = 300_000;

function log(...a) {
  console.error('ui-test:', ...a);
}

/** The environment less SEMANTIC_CONFIG, so a developer's config file does not change the server. */
function withoutConfig() {
  const env = {...process.env};
  delete env.SEMANTIC_CONFIG;
  return env;
}

/** Starts `semantic serve` on 127.0.0.1 port 0; resolves to {url, stop} once /health/ready is 200. */
async function startServer(binary) {
  const cacheDir = mkdtempSync(join(tmpdir(), 'semantic-ui-'));
  const model = resolve(arg('model', join(root, 'models/SmolLM2-135M-Instruct.Q4_1.gguf')));
  const child = spawn(binary, ['serve', '--port', '0', '--model', model, '--cache-dir', cacheDir,
    '--agent-ctx', '4096', '--resident-agents', '8'], {stdio: ['ignore', 'ignore', 'pipe'], env: withoutConfig()});
  let stderr = '';
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`the server printed no address in 60 s:\n${stderr}`)), 60_000);
    child.stderr.on('data', (d) => {
      stderr += d;
      const m = stderr.match(/semantic listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
    child.on('exit', (code) => fail(new Error(`the server exited (${code}):\n${stderr}`)));
  });
  // Each probe reads its body (undici keeps a connection busy until then) and has its own timeout.
  const ready = async () => {
    const res = await fetch(`${url}/health/ready`, {signal: AbortSignal.timeout(2_000)});
    await res.arrayBuffer();
    return res.ok;
  };
  await until(ready, 120_000, 'the server to be ready')
    .catch((e) => {
      child.kill('SIGKILL');
      throw new Error(`${e.message}; the server said:\n${stderr.split('\n').filter((l) => !l.includes('/health/ready')).join('\n')}`);
    });
  const stop = () => {
    child.kill('SIGKILL');
    try {
      rmSync(cacheDir, {recursive: true, force: true});
    } catch (e) {
      log(`left ${cacheDir}: ${e.message}`);
    }
  };
  return {url, stop};
}

/** Polls `check` (50 ms apart) until it is truthy or `ms` pass. */
async function until(check, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function expect(cond, message) {
  if (!cond) throw new Error(`check failed: ${message}`);
}

async function shot(page, name) {
  await page.screenshot({path: join(artifacts, `${name}.png`), fullPage: false});
  log(`screenshot ${name}.png`);
}

async function go(page, name) {
  await page.getByRole('navigation', {name: 'Pages'}).getByRole('link', {name}).click();
  await page.waitForSelector(`section[data-page="${name.toLowerCase()}"]:not([hidden])`);
  expect(new URL(page.url()).pathname === `/ui/${name.toLowerCase()}`, `the URL follows the page (${page.url()})`);
}

async function chat(page) {
  await page.waitForSelector('section[data-page="chat"] article.column >> nth=1');
  const columns = page.locator('article.column');
  expect(await columns.count() === 2, 'two columns by default');
  const turn = async (text, n) => {
    await page.getByLabel('Message to all').fill(text);
    await page.getByRole('button', {name: 'Send to all'}).click();
    for (let c = 0; c < 2; c++) {
      await columns.nth(c).locator(`li.msg.assistant[aria-busy="false"] >> nth=${n - 1}`).waitFor({timeout: TURN_MS});
    }
  };
  await turn('Name one city by the sea.', 1);
  await turn('And one in the mountains?', 2);
  for (let c = 0; c < 2; c++) {
    const items = columns.nth(c).locator('li.msg.assistant');
    for (let n = 0; n < 2; n++) {
      const item = items.nth(n);
      expect(!(await item.evaluate((e) => e.classList.contains('failed'))), `column ${c} turn ${n + 1} did not fail: ${await item.innerText()}`);
      const answer = (await item.locator('.answer').innerText()).trim();
      expect(answer.length > 0, `column ${c} turn ${n + 1} streamed an answer`);
    }
    const second = await items.nth(1).getAttribute('data-source');
    expect(['hot', 'warm'].includes(second), `column ${c}'s second turn reused memory (source ${second})`);
    const badge = (await items.nth(1).locator('.badge').innerText()).toLowerCase();
    expect(badge === second, `the badge shows ${second} (shows ${badge})`);
    const stats = await items.nth(1).locator('.stats').innerText();
    expect(/cached/.test(stats) && /TTFT \d/.test(stats) && /tok\/s/.test(stats), `turn stats: ${stats}`);
  }
  log('chat: two columns streamed; second turns were', await columns.locator('li.msg.assistant >> nth=1').first().getAttribute('data-source'));
}

async function memory(page) {
  await go(page, 'Memory');
  for (const id of ['alice', 'bob']) await page.waitForSelector(`tr[data-agent="${id}"]`, {timeout: 10_000});
  const tier = await page.locator('tr[data-agent="alice"] .badge').innerText();
  expect(['hot', 'warm', 'cold'].includes(tier.toLowerCase()), `alice has a tier (${tier})`);
  await page.getByLabel('Filter').fill('ali');
  await until(async () => (await page.locator('tr[data-agent]').count()) >= 1 && !(await page.locator('tr[data-agent="bob"]').count()), 5_000, 'the filter');
  await page.getByLabel('Filter').fill('');
  await page.waitForSelector('tr[data-agent="bob"]');
  const totals = await page.locator('section[data-page="memory"] .totals').innerText();
  expect(/Warm \(RAM\)[\s\S]* of [0-9.]+ [KMG]i?B/.test(totals), `the warm total is shown against its budget (${totals})`);
  expect((await page.locator('section[data-page="memory"] .totals .bar').count()) >= 3, 'the tiers have usage bars');
  // Export alice (a download of her agent file), then import the file as alice-copy.
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', {name: 'Export alice'}).click()]);
  expect(download.suggestedFilename() === 'alice.skv', `the export is named alice.skv (${download.suggestedFilename()})`);
  await page.getByLabel('Agent file').setInputFiles(await download.path());
  await page.getByLabel('Import as').fill('alice-copy');
  await page.getByRole('button', {name: 'Import', exact: true}).click();
  await page.waitForSelector('tr[data-agent="alice-copy"]', {timeout: 10_000});
  const copied = await page.locator('tr[data-agent="alice-copy"] td.num').first().innerText();
  const original = await page.locator('tr[data-agent="alice"] td.num').first().innerText();
  expect(copied === original, `the imported copy holds alice's tokens (${copied} vs ${original})`);
  expect((await page.locator('tr[data-agent="alice"] td').first().innerText()).length > 0, 'the model column is filled');
  log('memory: alice and bob listed, totals against budgets, alice exported and imported as alice-copy');
}

async function scenarios(page) {
  await go(page, 'Scenarios');
  await until(async () => (await page.getByLabel('Scenario (YAML)').inputValue()).includes('id: tiny'), 10_000, 'the tiny scenario to load');
  await page.getByLabel('Rounds per phase').fill('1');
  await page.getByLabel('Max tokens per turn').fill('32');
  // Phase by phase: the tiny scenario has two phases, so the run pauses once.
  await page.getByRole('button', {name: 'Run next phase'}).click();
  await page.locator('[data-run-status="paused"]').waitFor({timeout: RUN_MS});
  const first = await page.locator('section[data-page="scenarios"] li.msg.turn[aria-busy="false"]').count();
  expect(first >= 2, `the first phase's two turns are shown (${first})`);
  await page.getByRole('button', {name: 'Run next phase'}).click();
  const done = page.locator('[data-run-status]:not([data-run-status="paused"])');
  await done.waitFor({timeout: RUN_MS});
  const status = await done.getAttribute('data-run-status');
  expect(status === 'completed', `the run completed (${status})`);
  const turns = await page.locator('section[data-page="scenarios"] li.msg.turn[aria-busy="false"]').count();
  expect(turns >= 4, `four turns shown (${turns})`);
  expect(await page.locator('svg.graph line.edge').count() >= 2, 'the interaction graph has edges');
  log(`scenarios: tiny ran phase by phase, ${turns} turns`);
}

async function sessions(page) {
  await go(page, 'Sessions');
  await page.getByRole('button', {name: 'Create session'}).click();
  await page.getByRole('button', {name: 'Next turn'}).waitFor();
  await until(async () => page.getByRole('button', {name: 'Next turn'}).isEnabled(), 10_000, 'the session controls');
  await page.getByRole('button', {name: 'Next turn'}).click();
  await page.waitForSelector('section[data-page="sessions"] .timeline li.msg', {timeout: TURN_MS});
  await until(async () => (await page.locator('section[data-page="sessions"] .status-line').innerText()).includes('Done'), TURN_MS, 'the turn to finish');
  await page.waitForSelector('section[data-page="sessions"] ol.prompt li');
  // A whisper from Ada to Ben: Ben sees it, Cy does not.
  await page.getByRole('textbox', {name: 'Whisper'}).fill('Meet me after the vote.');
  await page.getByRole('button', {name: 'Whisper', exact: true}).click();
  const timeline = page.locator('section[data-page="sessions"] .timeline');
  await page.getByLabel('Seen by').selectOption('ben');
  await timeline.locator('li.whisper', {hasText: 'Meet me after the vote.'}).waitFor();
  await page.getByLabel('Seen by').selectOption('cy');
  await until(async () => (await timeline.locator('li.msg').count()) > 0 && !(await timeline.locator('li.whisper').count()), 10_000, 'Cy not to see the whisper');
  // A vote cast from the page shows in the votes.
  await page.getByLabel('Choice').fill('yes');
  await page.getByRole('button', {name: 'Cast vote'}).click();
  await page.locator('section[data-page="sessions"] li', {hasText: 'ada: yes'}).waitFor();
  await page.getByLabel('Seen by').selectOption('ben');
  await timeline.locator('li.whisper').waitFor();
  log('sessions: created, one turn ran, a whisper seen by Ben only, a vote cast');
}

async function server(page) {
  await go(page, 'Server');
  await page.waitForSelector('section[data-page="server"] .grid3 .stat');
  await until(async () => (await page.locator('svg.chart polyline').count()) >= 4, 10_000, 'the charts to draw');
  const tps = await page.locator('svg.chart title').nth(1).textContent();
  expect(/tok\/s/.test(tps), `the tokens/s chart is labelled (${tps})`);
  log('server: probes and charts');
}

/** A server with keys: the page loads without one, asks for it, then works; admin actions with the admin key. */
async function locked(context, url, key, adminKey) {
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  await page.goto(`${url}/ui/memory`);
  const banner = page.locator('#banner');
  await banner.waitFor();
  expect(/invalid API key/.test(await banner.innerText()), `the page says a key is needed (${await banner.innerText()})`);
  expect(await page.locator('#keys').evaluate((d) => d.open), 'the key form opens');
  await page.getByLabel('API key').fill(key);
  await page.getByLabel('Admin key').fill(adminKey);
  await page.getByRole('button', {name: 'Use keys'}).click();
  await page.waitForSelector('section[data-page="memory"] tbody td.muted');
  await go(page, 'Server');
  await page.waitForSelector('section[data-page="server"] dd >> text=/^[0-9a-f]{16,}$/');
  await page.getByRole('button', {name: 'Flush agent memory to disk'}).click();
  await page.waitForSelector('section[data-page="server"] .ok >> text=/flushed/');
  // The model swap lists the models directory with the serving model chosen; swapping to it is
  // answered by the server as unchanged (a real swap is tested against the API).
  const models = page.getByLabel('Model to serve');
  await until(async () => (await models.locator('option').count()) >= 1, 10_000, 'the models to be listed');
  const serving = await models.locator('option:checked').innerText();
  expect(/\(serving\)/.test(serving), `the serving model is preselected (${serving})`);
  await page.getByRole('button', {name: 'Swap model'}).click();
  await page.waitForSelector('section[data-page="server"] .ok >> text=/swap: unchanged/');
  await page.close();
  log('locked server: key asked for, then memory, flush and model swap work');
}

async function main() {
  mkdirSync(artifacts, {recursive: true});
  let url = arg('url');
  let stop = () => {};
  if (!url) {
    const binary = arg('binary');
    if (!binary) throw new Error('give --url of a running server or --binary to start one');
    ({url, stop} = await startServer(resolve(binary)));
  }
  const profile = mkdtempSync(join(tmpdir(), 'semantic-ui-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    viewport: {width: 1280, height: 800},
  });
  const problems = [];
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => m.type() === 'error' && problems.push(`console error: ${m.text()}`));
    page.setDefaultTimeout(15_000);
    await page.goto(`${url}/`);
    expect(new URL(page.url()).pathname === '/ui/', `/ redirects to /ui/ (${page.url()})`);
    // Open the Server page first: its charts sample /metrics from then on, so they show the chat.
    await go(page, 'Server');
    await page.waitForSelector('section[data-page="server"] .grid3 .stat');
    await go(page, 'Chat');
    await chat(page);
    await shot(page, 'chat');
    await memory(page);
    await shot(page, 'memory');
    await scenarios(page);
    // The transcript and outcome, under the sticky header.
    await page.evaluate(() => {
      document.querySelector('section[data-page="scenarios"] .split').scrollIntoView({block: 'start'});
      window.scrollBy(0, -60);
    });
    await shot(page, 'scenarios');
    await sessions(page);
    await shot(page, 'sessions');
    await server(page);
    await shot(page, 'server');
    // The chat at phone width, then a deep link opens its page directly.
    await page.setViewportSize({width: 390, height: 844});
    await go(page, 'Chat');
    await page.locator('article.column li.msg.assistant').first().scrollIntoViewIfNeeded();
    await shot(page, 'chat-phone');
    await page.goto(`${url}/ui/memory`);
    await page.waitForSelector('tr[data-agent="alice"]');
    expect(problems.length === 0, `no errors in the page:\n${problems.join('\n')}`);
    const lockedUrl = arg('locked-url');
    if (lockedUrl) await locked(context, lockedUrl, arg('key'), arg('admin-key'));
  } finally {
    await context.close();
    rmSync(profile, {recursive: true, force: true});
    stop();
  }
  log(`pass; screenshots in ${artifacts}`);
}

main().catch((e) => {
  console.error(`ui-test: FAIL: ${e.stack || e.message}`);
  process.exit(1);
});
