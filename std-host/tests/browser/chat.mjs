// Browser test of the chat page and the dashboard, driven by playwright-core on Debian's
// chromium (never a downloaded browser). Run by std-host/tests/browser.rs, which starts
// the stomp-relay instances and passes one JSON argument:
//   {"scenario": "relay" | "single" | "sockjs", "a": "http://127.0.0.1:PORT", "b": "http://...",
//    "token": "admin token", "artifacts": "dir for screenshots", "docs": "dir or null",
//    "stompjsSha256": "hex"}
// Talks back on stdout: `ACTION restart b` asks the Rust side to restart instance b (it
// answers `done` on stdin); the last line is `PASS` on success. Any failure throws.
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const cfg = JSON.parse(process.argv[2]);
const WAIT = 15000;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const stdin = createInterface({ input: process.stdin });
const answers = [];
let waiting = null;
stdin.on('line', (l) => (waiting ? (waiting(l), (waiting = null)) : answers.push(l)));
function ask(action) {
  console.log('ACTION ' + action);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no answer to ' + action)), 60000);
    const done = (l) => (clearTimeout(t), resolve(l));
    if (answers.length) done(answers.shift());
    else waiting = done;
  });
}

function log(...a) {
  console.log('[browser]', ...a);
}

function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
}

async function stats(base) {
  const r = await fetch(base + '/api/stats', { headers: { Authorization: 'Bearer ' + cfg.token } });
  if (!r.ok) throw new Error('/api/stats ' + r.status);
  return r.json();
}

/** Waits until `base` holds `n` subscriptions to `dest` (so nothing sent next is missed). */
async function waitSubscribers(base, dest, n) {
  const deadline = Date.now() + WAIT;
  for (;;) {
    const s = await stats(base);
    const row = s.subscriptions.by_destination.find((d) => d.destination === dest);
    if ((row ? row.subscribers : 0) === n) return s;
    if (Date.now() > deadline) throw new Error(`${base}: ${dest} never had ${n} subscribers: ${JSON.stringify(s.subscriptions)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// `opts.noWebSocket` removes window.WebSocket before the page runs, as in a browser
// or proxy without it; `opts.query` is appended to the page URL.
async function openChat(context, base, name, opts = {}) {
  const page = await context.newPage();
  if (opts.noWebSocket) {
    await page.addInitScript(() => {
      delete window.WebSocket;
    });
  }
  page.on('console', (m) => m.type() === 'error' && log(name, 'console error:', m.text()));
  page.on('pageerror', (e) => log(name, 'page error:', e.message));
  // Every state the page shows, in order, to prove it went through "reconnecting".
  await page.addInitScript(() => {
    window.__states = [];
    new MutationObserver(() => {
      const s = document.getElementById('state');
      if (s && window.__states[window.__states.length - 1] !== s.dataset.state) window.__states.push(s.dataset.state);
    }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-state'] });
  });
  const resp = await page.goto(`${base}/?room=lobby&name=${encodeURIComponent(name)}${opts.query || ''}`);
  check(resp.status() === 200, 'chat page 200');
  check((resp.headers()['content-type'] || '').includes('charset=utf-8'), 'chat page declares UTF-8');
  await page.waitForSelector('#state[data-state="connected"]', { timeout: WAIT });
  return page;
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.click('#send');
}

async function texts(page) {
  return page.$$eval('#messages .msg:not(.note) .text', (els) => els.map((e) => e.textContent));
}

async function waitText(page, text, cls) {
  await page.waitForFunction(
    ([t, c]) => [...document.querySelectorAll('#messages .msg.' + c + ' .text')].some((e) => e.textContent === t),
    [text, cls],
    { timeout: WAIT }
  );
}

// The chat page on `--endpoint /ws-stomp --sockjs`: a page with WebSocket removed asks
// for SockJS and gets xhr-streaming; it talks to a page on the plain WebSocket.
async function sockjsChat(context, A) {
  const minho = await openChat(context, A, 'Minho', { noWebSocket: true, query: '&transport=sockjs' });
  check(await minho.evaluate(() => typeof window.WebSocket === 'undefined'), 'WebSocket removed from the page');
  const bob = await openChat(context, A, 'Bob');
  await waitSubscribers(A, '/sub/chat/lobby', 2);
  const hello = 'SockJS 안녕 ' + Date.now();
  await say(minho, hello);
  await waitText(bob, hello, 'theirs');
  const back = 'WebSocket reply ' + Date.now();
  await say(bob, back);
  await waitText(minho, back, 'theirs');
  const s = await stats(A);
  const transports = s.sessions.listed.map((x) => x.transport).sort();
  check(
    JSON.stringify(transports) === JSON.stringify(['sockjs-xhr-streaming', 'ws']),
    'sessions by transport: ' + JSON.stringify(transports)
  );
  await minho.screenshot({ path: join(cfg.artifacts, 'chat-sockjs.png') });
  log('SockJS page and WebSocket page exchanged messages:', transports.join(', '));
  await minho.close();
  await bob.close();
}

async function main() {
  const single = cfg.scenario === 'single';
  const A = cfg.a;
  const B = single ? cfg.a : cfg.b;
  mkdirSync(cfg.artifacts, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), 'stomp-relay-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1100, height: 720 },
    locale: 'ko-KR',
    timezoneId: 'UTC',
  });
  try {
    // The page runs exactly the vendored stompjs bundle.
    const bundle = await (await fetch(A + '/assets/stomp.umd.min.js')).arrayBuffer();
    const sha = createHash('sha256').update(Buffer.from(bundle)).digest('hex');
    check(sha === cfg.stompjsSha256, `served stompjs sha256 ${sha} != vendored ${cfg.stompjsSha256}`);
    if (cfg.scenario === 'sockjs') {
      await sockjsChat(context, A);
      return;
    }

    // The dashboard is protected: 401 without the token.
    const probe = await context.newPage();
    const denied = await probe.goto(A + '/dashboard');
    check(denied.status() === 401, 'dashboard without token is 401, got ' + denied.status());
    await probe.close();

    const alice = await openChat(context, A, 'Alice');
    const bob = await openChat(context, B, 'Bob');
    const pages = [alice, bob];
    let minji = null;
    if (!single) {
      // A second session on instance A, with a Korean name.
      minji = await openChat(context, A, '민지');
      pages.push(minji);
      await waitSubscribers(A, '/sub/chat/lobby', 2);
      await waitSubscribers(B, '/sub/chat/lobby', 1);
    } else {
      await waitSubscribers(A, '/sub/chat/lobby', 2);
    }
    log('pages connected and subscribed');

    const said = [];
    const exchange = async (from, text) => {
      await say(from, text);
      said.push(text);
      for (const p of pages) await waitText(p, text, p === from ? 'mine' : 'theirs');
    };
    await exchange(alice, '안녕하세요 Bob! 한국어 잘 보여요? (instance A)');
    await exchange(bob, '네, 잘 보여요 👍 반갑습니다, Alice — from instance B');
    if (minji) await exchange(minji, '저도 들어왔어요. 같은 방, 다른 인스턴스 🎉');
    await exchange(alice, 'Messages cross instances through ActiveMQ ✓'.replace('ActiveMQ', single ? 'the simple broker' : 'ActiveMQ'));
    for (const p of pages) {
      const got = await texts(p);
      check(JSON.stringify(got) === JSON.stringify(said), `every page shows every message once, in order: ${JSON.stringify(got)}`);
    }
    // The sender's name survives UTF-8 too.
    if (minji) {
      const names = await bob.$$eval('#messages .msg .from', (els) => els.map((e) => e.textContent));
      check(names.includes('민지'), 'Korean sender name shown: ' + JSON.stringify(names));
    }
    log('messages exchanged in order on every page');

    // Dashboard: live state from /api/stats.
    const dash = await context.newPage();
    const ok = await dash.goto(`${A}/dashboard?token=${encodeURIComponent(cfg.token)}`);
    check(ok.status() === 200, 'dashboard with token is 200');
    const wantA = single ? 2 : 2;
    await dash.waitForFunction((n) => document.querySelectorAll('#sessions tbody tr[data-session-id]').length === n, wantA, { timeout: WAIT });
    check(!dash.url().includes('token='), 'token removed from the address bar');
    const users = await dash.$$eval('#sessions tbody tr[data-session-id] td:nth-child(2)', (els) => els.map((e) => e.textContent).sort());
    check(JSON.stringify(users) === JSON.stringify(single ? ['Alice', 'Bob'] : ['Alice', '민지'].sort()), 'dashboard lists the sessions: ' + users);
    const lobby = await dash.textContent('#destinations tr[data-destination="/sub/chat/lobby"] td:nth-child(2)');
    check(lobby === '2', 'lobby subscribers on the dashboard: ' + lobby);
    const mode = await dash.textContent('#broker-mode');
    check(mode === (single ? 'simple' : 'relay'), 'broker mode shown: ' + mode);
    const detail = await dash.textContent('#broker-detail');
    check(detail.startsWith('available') && (single || detail.includes('per-session · 3 upstream connections · dialect activemq')), 'broker detail shown: ' + detail);
    if (!single) {
      const addr = await dash.textContent('#addresses tbody tr td:first-child');
      check(addr === 'stomp://127.0.0.1:61613', 'broker address shown: ' + addr);
      const state = await dash.textContent('#addresses tbody tr td:nth-child(2)');
      check(/connected|available/.test(state) && !/not/.test(state), 'broker availability shown: ' + state);
    }
    // The chart has drawn the burst: wait for a sample with traffic.
    await dash.waitForFunction(() => !document.getElementById('rate-totals').textContent.includes('totals 0 /'), null, { timeout: WAIT });
    await dash.waitForTimeout(1500);
    if (!single) {
      const dashB = await context.newPage();
      await dashB.goto(`${B}/dashboard?token=${encodeURIComponent(cfg.token)}`);
      await dashB.waitForFunction(() => document.querySelectorAll('#sessions tbody tr[data-session-id]').length === 1, null, { timeout: WAIT });
      const u = await dashB.textContent('#sessions tbody tr[data-session-id] td:nth-child(2)');
      check(u === 'Bob', 'instance B dashboard lists Bob: ' + u);
      await dashB.screenshot({ path: join(cfg.artifacts, 'dashboard-b.png'), fullPage: true });
      await dashB.close();
    }
    const tag = single ? 'single' : 'relay';
    await bob.bringToFront();
    await bob.screenshot({ path: join(cfg.artifacts, `chat-${tag}-bob.png`) });
    await alice.screenshot({ path: join(cfg.artifacts, `chat-${tag}-alice.png`) });
    await dash.screenshot({ path: join(cfg.artifacts, `dashboard-${tag}.png`), fullPage: true });
    log('dashboard checked, screenshots in', cfg.artifacts);

    if (!single) {
      // Instance B goes away and comes back: Bob's page shows it reconnecting (with
      // backoff) and, once connected again, receives again.
      await bob.evaluate(() => (window.__states = []));
      const answer = await ask('restart b');
      check(answer === 'done', 'restart answered: ' + answer);
      await bob.waitForSelector('#state[data-state="connected"]', { timeout: 30000 });
      await bob.waitForFunction(() => window.__states.includes('reconnecting'), null, { timeout: WAIT });
      const states = await bob.evaluate(() => window.__states);
      log('Bob page states during the restart:', states.join(' -> '));
      check(states.indexOf('reconnecting') < states.lastIndexOf('connected'), 'reconnecting then connected: ' + states);
      await waitSubscribers(B, '/sub/chat/lobby', 1);
      const after = '다시 연결됐어요 — reconnected';
      await say(alice, after);
      await waitText(bob, after, 'theirs');
      log('Bob reconnected and receives again');
    }

    if (cfg.docs) {
      mkdirSync(cfg.docs, { recursive: true });
      copyFileSync(join(cfg.artifacts, `chat-${tag}-bob.png`), join(cfg.docs, 'chat.png'));
      copyFileSync(join(cfg.artifacts, `dashboard-${tag}.png`), join(cfg.docs, 'dashboard.png'));
      log('copied screenshots to', cfg.docs);
    }
    for (const p of pages) await p.close();
    await dash.close();
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

main().then(() => {
  console.log('PASS');
  process.exit(0);
}, (e) => {
  console.error('FAIL', e && e.stack ? e.stack : e);
  process.exit(1);
});
