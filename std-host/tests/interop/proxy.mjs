// The HTTP proxies (connect, subscribe, application) with real @stomp/stompjs clients
// and the Node back end of backend.mjs, started by ../proxies.rs beside stomp-relay.
// Scenarios: connect, subscribe, app (two instances with INTEROP_WS_URL_2), failures,
// user-queue-errors. Each prints `ok <name>` or exits 1 saying what differed.

import {
  assert, assertEq, closeAll, config, connectStompjs, main, sendConfirmed, sleep,
  subscribeConfirmed, until, within,
} from './lib.mjs';

// An ERROR (and the close after it) instead of CONNECTED.
async function refusedAtConnect(login) {
  try {
    const { client } = await connectStompjs({ login, name: login });
    await closeAll([client]);
  } catch (e) {
    return e.message;
  }
  throw new Error(`${login} was let in`);
}

// Waits for the ERROR a frame earned and for the close after it.
async function errorAndClose(observed, what) {
  await until(5000, `ERROR for ${what}`, () => observed.errors.length > 0);
  await until(5000, `close after the ERROR for ${what}`, () => observed.closes.length > 0);
  return observed.errors[0].headers.message;
}

// Connect proxy: the back end refuses `banned`, names the user, adds claims (which an
// authorization rule uses) and CONNECTED headers, and never sees the passcode.
async function connect() {
  const msg = await refusedAtConnect('banned');
  assert(msg.includes('user banned is banned by the back end'), `refusal: ${msg}`);
  const { client: alice, observed: a } = await connectStompjs({ login: 'alice', name: 'alice' });
  const { client: admin, observed: b } = await connectStompjs({ login: 'admin1', name: 'admin1' });
  try {
    assertEq(a.connected.headers['user-name'], 'alice', 'CONNECTED user-name');
    assertEq(a.connected.headers['x-backend'], 'node', 'CONNECTED header from the back end');
    assert(/^ws 127\.0\.0\.1:\d+$/.test(a.connected.headers['x-remote'] ?? ''),
      `the back end saw transport and remote address: ${a.connected.headers['x-remote']}`);
    // Claim role=admin from the back end opens /topic/admin.** (rule in proxies.rs).
    const got = [];
    await subscribeConfirmed(admin, '/topic/admin.news', m => got.push(m.body));
    await sendConfirmed(admin, { destination: '/topic/admin.news', body: 'for admins' });
    await until(5000, 'admin message', () => got.includes('for admins'), () => JSON.stringify(got));
    alice.subscribe('/topic/admin.news', () => {});
    const denied = await errorAndClose(a, 'alice subscribing to /topic/admin.news');
    assert(denied.includes('Access denied'), `alice's refusal: ${denied}`);
    assertEq(b.errors.length, 0, 'errors at admin1');
    return 'banned refused, user and claims from the back end, rule applied';
  } finally {
    await closeAll([alice, admin]);
  }
}

// Subscribe proxy: refusals, a first message only to the subscriber (broker and
// application destinations), then the broker subscription as usual.
async function subscribe() {
  const { client: alice, observed: a } = await connectStompjs({ login: 'alice', name: 'alice' });
  const { client: bob } = await connectStompjs({ login: 'bob', name: 'bob' });
  const { client: carol, observed: c } = await connectStompjs({ login: 'carol', name: 'carol' });
  try {
    const init = [];
    await subscribeConfirmed(alice, '/app/init/lobby', m => init.push(m));
    await until(5000, 'first message on /app/init/lobby', () => init.length === 1);
    assertEq(JSON.parse(init[0].body).room, 'lobby', 'room captured from the pattern');
    assertEq(JSON.parse(init[0].body).members[0], 'alice', 'user passed to the back end');
    assertEq(init[0].headers['content-type'], 'application/json', 'reply header');
    assertEq(init[0].headers.destination, '/app/init/lobby', 'reply destination');

    const news = { alice: [], bob: [] };
    // The welcome comes before the RECEIPT: the receipt is sent after the back end answered.
    let receiptAfterWelcome = null;
    const rid = 'sub-news';
    const receipted = new Promise(r => alice.watchForReceipt(rid, () => { receiptAfterWelcome = news.alice.length === 1; r(); }));
    alice.subscribe('/topic/news', m => news.alice.push(m.body), { receipt: rid });
    await within(5000, 'RECEIPT for SUBSCRIBE /topic/news', receipted);
    await subscribeConfirmed(bob, '/topic/news', m => news.bob.push(m.body));
    await until(5000, 'welcome messages', () => news.alice.length === 1 && news.bob.length === 1);
    assert(receiptAfterWelcome, 'RECEIPT arrived before the back end\'s first message');
    assertEq(news.alice[0], 'welcome alice', 'welcome to alice');
    assertEq(news.bob[0], 'welcome bob', 'welcome to bob (not alice\'s)');
    await sendConfirmed(carol, { destination: '/topic/news', body: 'extra' });
    await until(5000, 'broadcast after the allow', () => news.alice.length === 2 && news.bob.length === 2);

    carol.subscribe('/topic/secret.plans', () => {});
    const denied = await errorAndClose(c, 'SUBSCRIBE /topic/secret.plans');
    assertEq(denied, 'no access to /topic/secret.plans', 'the back end\'s refusal');
    assertEq(a.errors.length, 0, 'errors at alice');
    return 'init reply, welcome before RECEIPT, refusal as ERROR';
  } finally {
    await closeAll([alice, bob, carol]);
  }
}

// Application proxy across two instances: @SendTo reaches every subscriber of
// /topic/chat, @SendToUser every session of the sender only, and the RECEIPT follows.
async function app() {
  const other = process.env.INTEROP_WS_URL_2 ?? config.wsUrl;
  const specs = [['alice', config.wsUrl], ['alice', other], ['bob', other]];
  const clients = [];
  const chat = specs.map(() => []);
  const acks = specs.map(() => []);
  try {
    for (let i = 0; i < specs.length; i++) {
      const [login, wsUrl] = specs[i];
      const { client } = await connectStompjs({ login, wsUrl, name: `${login}${i}` });
      clients.push(client);
      await subscribeConfirmed(client, '/topic/chat', m => chat[i].push(m));
      await subscribeConfirmed(client, '/user/queue/ack', m => acks[i].push(m.body));
    }
    if (process.env.INTEROP_WS_URL_2) {
      // The first instance learns alice's session on the second through the broker.
      let users = null;
      const listed = () => {
        const row = users?.listed.find(r => r.name === 'alice');
        return row?.sessions === 2 && row?.instances === 2;
      };
      const end = Date.now() + 10000;
      while (!listed()) {
        assert(Date.now() < end, `alice never listed with 2 sessions on 2 instances: ${JSON.stringify(users)}`);
        await sleep(100);
        users = (await (await fetch(process.env.STATS_URL)).json()).users;
      }
    }
    await sendConfirmed(clients[0], {
      destination: '/app/chat/message',
      body: JSON.stringify({ text: '안녕 hello' }),
      headers: { 'content-type': 'application/json' },
    });
    await until(10000, 'chat on every session', () => chat.every(c => c.length === 1),
      () => JSON.stringify(chat.map(c => c.length)));
    await until(10000, 'acks on alice\'s sessions', () => acks[0].length === 1 && acks[1].length === 1,
      () => JSON.stringify(acks));
    await sleep(300);
    for (const c of chat) {
      assertEq(c[0].body, JSON.stringify({ from: 'alice', text: '안녕 hello' }), 'chat body');
      assertEq(c[0].headers['content-type'], 'application/json', 'chat content-type');
    }
    assertEq(acks[0][0], 'ack 안녕 hello', 'ack body');
    assertEq(acks[2].length, 0, 'acks leaked to bob');
    return '@SendTo to 3 sessions, @SendToUser to alice\'s 2, across instances';
  } finally {
    await closeAll(clients);
  }
}

// A slow back end and a failing one cost their own clients an ERROR; a client of the
// same server using the same back end keeps its round trips meanwhile.
async function failures() {
  const { client: slow, observed: s } = await connectStompjs({ login: 'slow', name: 'slow' });
  const { client: fail, observed: f } = await connectStompjs({ login: 'fail', name: 'fail' });
  const { client: bad, observed: b } = await connectStompjs({ login: 'bad', name: 'bad' });
  const { client: busy, observed: u } = await connectStompjs({ login: 'busy', name: 'busy' });
  try {
    const echoes = [];
    await subscribeConfirmed(busy, '/user/queue/echo', m => echoes.push(m.body));
    const started = Date.now();
    slow.publish({ destination: '/app/slow', body: 'x' });
    fail.publish({ destination: '/app/fail', body: 'x' });
    bad.publish({ destination: '/app/bad', body: 'x' });
    // While the slow call runs, the busy client's round trips go on.
    for (let i = 0; i < 20; i++) {
      await sendConfirmed(busy, { destination: '/app/echo', body: `echo ${i}` });
    }
    const busyMs = Date.now() - started;
    await until(5000, '20 echoes', () => echoes.length === 20);
    assertEq(echoes[19], 'echo 19', 'echo order');
    assert(Date.now() - started < 3000 || busyMs < 3000, `busy client stalled: ${busyMs} ms`);
    const slowMsg = await errorAndClose(s, 'SEND /app/slow');
    assert(slowMsg.includes('did not answer within 500 ms'), `slow: ${slowMsg}`);
    const failMsg = await errorAndClose(f, 'SEND /app/fail');
    assert(failMsg.includes('HTTP 500'), `fail: ${failMsg}`);
    const badMsg = await errorAndClose(b, 'SEND /app/bad');
    assertEq(badMsg, 'the back end refused this message', 'refusal');
    assertEq(u.errors.length, 0, 'errors at the busy client');
    assertEq(u.closes.length, 0, 'busy client closed');
    return `20 echo round trips in ${busyMs} ms beside a 500 ms timeout, an HTTP 500 and a refusal`;
  } finally {
    await closeAll([slow, fail, bad, busy]);
  }
}

// --app-proxy-errors user-queue: the refusal arrives on /user/queue/errors, the
// RECEIPT follows and the session stays open.
async function userQueueErrors() {
  const { client, observed } = await connectStompjs({ login: 'dave', name: 'dave' });
  try {
    const errors = [];
    await subscribeConfirmed(client, '/user/queue/errors', m => errors.push(m));
    await sendConfirmed(client, { destination: '/app/bad', body: 'x' });
    await until(5000, 'message on /user/queue/errors', () => errors.length === 1);
    assertEq(errors[0].body, 'the back end refused this message', 'error body');
    assertEq(errors[0].headers['about-destination'], '/app/bad', 'about-destination');
    const echoes = [];
    await subscribeConfirmed(client, '/user/queue/echo', m => echoes.push(m.body));
    await sendConfirmed(client, { destination: '/app/echo', body: 'still here' });
    await until(5000, 'echo after the error', () => echoes.length === 1);
    assertEq(observed.errors.length, 0, 'ERROR frames');
    return 'error on /user/queue/errors, session open';
  } finally {
    await closeAll([client]);
  }
}

// The circuit breaker (server run with --proxy-breaker-failures 2 and /app/fail on a
// route of its own): two HTTP 500s open that route's circuit, the third SEND fails at
// once without reaching the back end, the metric shows the open circuit, and the
// other route keeps answering.
async function breaker() {
  const calls = async () => (await (await fetch(process.env.BACKEND_STATS_URL)).json()).app;
  const messages = [];
  for (let i = 0; i < 3; i++) {
    const { client, observed } = await connectStompjs({ login: `f${i}`, name: `f${i}` });
    const before = await calls();
    const started = Date.now();
    client.publish({ destination: '/app/fail', body: 'x' });
    messages.push(await errorAndClose(observed, `SEND /app/fail #${i}`));
    const reached = (await calls()) - before;
    if (i < 2) assertEq(reached, 1, `call ${i} reached the back end`);
    else {
      assertEq(reached, 0, 'calls reaching the back end with the circuit open');
      assert(Date.now() - started < 1000, 'an open circuit answers at once');
    }
    await closeAll([client]);
  }
  assert(messages[0].includes('HTTP 500') && messages[1].includes('HTTP 500'), `first errors: ${messages}`);
  assert(messages[2].includes('Back end unavailable'), `third error: ${messages[2]}`);
  const metrics = await (await fetch(process.env.METRICS_URL)).text();
  assert(/stomp_proxy_circuits_open\{proxy="app"\} 1/.test(metrics), 'circuit gauge at 1');
  assert(/stomp_proxy_calls_total\{proxy="app",outcome="circuit_open"\} 1/.test(metrics),
    `circuit_open counted: ${metrics.split('\n').filter(l => l.includes('proxy_calls')).join('; ')}`);
  const { client } = await connectStompjs({ login: 'ok', name: 'ok' });
  try {
    const echoes = [];
    await subscribeConfirmed(client, '/user/queue/echo', m => echoes.push(m.body));
    await sendConfirmed(client, { destination: '/app/echo', body: 'other route' });
    await until(5000, 'echo on the other route', () => echoes.length === 1);
  } finally {
    await closeAll([client]);
  }
  return 'opened after 2 failures, third call refused at once, other route unaffected';
}

await main({ connect, subscribe, app, failures, breaker, 'user-queue-errors': userQueueErrors });
