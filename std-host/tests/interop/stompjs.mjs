// Interop scenarios driven by the real @stomp/stompjs client over WebSocket (`ws`).
//
// Usage: node stompjs.mjs <scenario>; configuration comes from INTEROP_* variables
// (README.md). Each scenario asserts something a user of the server would notice, is
// bounded in time and message count, prints one `ok` line on success and exits 1 with
// the reason otherwise.

import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import {
  ALL_VERSIONS,
  assert,
  assertEq,
  closeAll,
  config,
  connectStompjs,
  main,
  sendConfirmed,
  sleep,
  subscribeConfirmed,
  uniqueDest,
  until,
  within,
} from './lib.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

// Connect offering exactly one STOMP version, then subscribe, send and receive on it.
async function versions() {
  const seen = [];
  for (const version of ALL_VERSIONS.slice().reverse()) {
    const { client, observed } = await connectStompjs({ versions: [version], name: `v${version}` });
    try {
      const wantProto = `v${version.replace('.', '')}.stomp`;
      assertEq(observed.protocol, wantProto, `negotiated WebSocket subprotocol for STOMP ${version}`);
      const got = observed.connected.headers.version;
      if (version === '1.0') {
        // A 1.0 server need not send `version`; if it does it must say 1.0.
        assert(got === undefined || got === '1.0', `CONNECTED version for 1.0 client was ${got}`);
      } else {
        assertEq(got, version, 'CONNECTED version header');
      }
      const dest = uniqueDest(`v${version.replace('.', '')}`);
      const received = [];
      await subscribeConfirmed(client, dest, m => received.push(m));
      const body = `hello over STOMP ${version}`;
      client.publish({ destination: dest, body });
      await until(5000, `MESSAGE on ${dest} (STOMP ${version})`, () => received.length >= 1);
      assertEq(received[0].body, body, `body received over STOMP ${version}`);
      assertEq(received[0].headers.destination, dest, 'MESSAGE destination header');
      assert(received[0].headers['message-id'], 'MESSAGE has a message-id');
      assert(received[0].headers.subscription !== undefined, 'MESSAGE has a subscription header');
      seen.push(`${version}:${observed.protocol}`);
    } finally {
      await closeAll([client]);
    }
  }
  return seen.join(' ');
}

// Every frame asking for a receipt gets exactly one, in the order the frames were sent.
async function receipts() {
  const { client, observed } = await connectStompjs();
  try {
    const dest = uniqueDest('receipts');
    const order = [];
    const want = [];
    const got = [];
    const received = [];
    const subReceipt = 'r-sub';
    want.push(subReceipt);
    got.push(new Promise(r => client.watchForReceipt(subReceipt, f => { order.push(f.headers['receipt-id']); r(); })));
    client.subscribe(dest, m => received.push(m.body), { receipt: subReceipt });
    for (let i = 0; i < 10; i++) {
      const id = `r-send-${i}`;
      want.push(id);
      got.push(new Promise(r => client.watchForReceipt(id, f => { order.push(f.headers['receipt-id']); r(); })));
      client.publish({ destination: dest, body: `m${i}`, headers: { receipt: id } });
    }
    await within(10000, 'all 11 RECEIPTs', Promise.all(got));
    assertEq(order.join(','), want.join(','), 'RECEIPT order');
    await until(5000, '10 messages', () => received.length >= 10);
    assertEq(received.join(','), [...Array(10).keys()].map(i => `m${i}`).join(','), 'messages');
    assertEq(observed.errors.length, 0, 'ERROR frames');
    return `${order.length} receipts in order`;
  } finally {
    await closeAll([client]);
  }
}

// Short heart-beats both ways keep an idle session open for many intervals.
async function heartbeats() {
  const interval = 300;
  const idleMs = 3000;
  const { client, observed } = await connectStompjs({
    heartbeatIncoming: interval,
    heartbeatOutgoing: interval,
    // Up to 4 silent intervals before giving up, so a loaded CI machine's scheduling
    // jitter is not mistaken for a server that stopped beating.
    heartbeatToleranceMultiplier: 4,
  });
  try {
    const hb = observed.connected.headers['heart-beat'];
    assert(hb !== undefined, 'CONNECTED carries a heart-beat header');
    const [sx, sy] = hb.split(',').map(v => parseInt(v.trim(), 10));
    assert(sx > 0 && sx <= 1000, `server offers to send heart-beats at a short interval (heart-beat:${hb}); start it with a short server heart-beat`);
    assert(sy > 0, `server wants heart-beats from the client (heart-beat:${hb})`);
    await sleep(idleMs);
    assertEq(observed.closes.length, 0, `closes during ${idleMs} ms idle (${JSON.stringify(observed.closes)})`);
    assert(!observed.heartbeatLost, 'client saw server heart-beats stop');
    const period = Math.max(interval, sx);
    const expected = Math.floor(idleMs / period / 2);
    assert(
      observed.heartbeatsReceived >= expected,
      `received ${observed.heartbeatsReceived} server heart-beats in ${idleMs} ms at ${period} ms, want >= ${expected}`,
    );
    assert(client.connected, 'still connected after idling');
    // The session is not just open but usable.
    const dest = uniqueDest('hb');
    const received = [];
    await subscribeConfirmed(client, dest, m => received.push(m.body));
    client.publish({ destination: dest, body: 'after idle' });
    await until(5000, 'MESSAGE after idle', () => received.length >= 1);
    assertEq(received[0], 'after idle', 'body after idle');
    return `heart-beat:${hb}, ${observed.heartbeatsReceived} server heart-beats in ${idleMs} ms`;
  } finally {
    await closeAll([client]);
  }
}

function hex(bytes) {
  return Buffer.from(bytes).toString('hex');
}

// Bodies with NUL and every other byte value, and Korean text, arrive byte for byte.
async function bodies() {
  const { client, observed } = await connectStompjs();
  try {
    const dest = uniqueDest('bodies');
    const received = [];
    await subscribeConfirmed(client, dest, m => received.push(m));
    const korean = '안녕하세요, 세계! 메시지 브로커 테스트입니다 🌏 — ünïcödé';
    const title = '제목: 한국어\\콜론';
    client.publish({
      destination: dest,
      body: korean,
      headers: { 'content-type': 'text/plain;charset=UTF-8', 'x-title': title },
    });
    // RabbitMQ Web-STOMP (default `web_stomp.ws_frame = text`) can only deliver bodies
    // that are valid UTF-8 and drops the connection otherwise; INTEROP_BINARY=utf8
    // restricts the body to that so the script itself can be checked against it.
    const binary =
      process.env.INTEROP_BINARY === 'utf8'
        ? new Uint8Array(Buffer.from('\0bin\0ary\0 with NULs 바이너리\0'))
        : Uint8Array.from({ length: 512 }, (_, i) => (i % 5 === 0 ? 0 : (i * 7 + (i >> 8)) & 0xff));
    client.publish({
      destination: dest,
      binaryBody: binary,
      headers: { 'content-type': 'application/octet-stream' },
    });
    const closes = () => `closes: ${JSON.stringify(observed.closes)}`;
    await until(5000, 'the Korean message', () => received.length >= 1, closes);
    assertEq(received[0].body, korean, 'Korean UTF-8 body');
    assertEq(received[0].headers['x-title'], title, 'Korean header value with colon and backslash');
    await until(5000, 'the binary message', () => received.length >= 2, closes);
    const bin = received[1].binaryBody;
    assertEq(bin.length, binary.length, 'binary body length');
    assertEq(hex(bin), hex(binary), 'binary body bytes');
    assertEq(received[1].headers['content-length'], String(binary.length), 'content-length of binary MESSAGE');
    return `${binary.length} binary bytes with ${binary.filter(b => b === 0).length} NULs, ${Buffer.byteLength(korean)} UTF-8 bytes of Korean`;
  } finally {
    await closeAll([client]);
  }
}

// A 200-message burst from one sender arrives complete and in order.
async function burst() {
  const count = 200;
  const { client: sub } = await connectStompjs({ name: 'sub' });
  const { client: pub } = await connectStompjs({ name: 'pub' });
  try {
    const dest = uniqueDest('burst');
    const received = [];
    await subscribeConfirmed(sub, dest, m => received.push(m.body));
    for (let i = 0; i < count; i++) pub.publish({ destination: dest, body: `seq-${i}` });
    await until(15000, `${count} messages`, () => received.length >= count, () => `got ${received.length}`);
    await sleep(200);
    assertEq(received.length, count, 'message count (no duplicates)');
    for (let i = 0; i < count; i++) assertEq(received[i], `seq-${i}`, `message at position ${i}`);
    return `${count} in order`;
  } finally {
    await closeAll([sub, pub]);
  }
}

// Every one of N concurrently connected subscribers receives each broadcast exactly once.
async function fanout() {
  const n = parseInt(process.env.INTEROP_FANOUT ?? '60', 10);
  const rounds = 3;
  const dest = uniqueDest('fanout');
  const clients = [];
  const inbox = [];
  try {
    // Connect in waves of 20 to stay friendly to a 2-core machine.
    for (let base = 0; base < n; base += 20) {
      const wave = [];
      for (let i = base; i < Math.min(n, base + 20); i++) {
        wave.push(
          (async () => {
            const { client } = await connectStompjs({ name: `fan${i}` });
            clients.push(client);
            const box = [];
            inbox[i] = box;
            await subscribeConfirmed(client, dest, m => box.push(m.body));
          })(),
        );
      }
      await within(30000, `wave of subscribers from ${base}`, Promise.all(wave));
    }
    const { client: pub } = await connectStompjs({ name: 'pub' });
    clients.push(pub);
    for (let r = 0; r < rounds; r++) pub.publish({ destination: dest, body: `broadcast-${r}` });
    const total = () => inbox.reduce((a, b) => a + b.length, 0);
    await until(15000, `${n * rounds} deliveries`, () => total() >= n * rounds, () => {
      const short = inbox.map((b, i) => [i, b.length]).filter(([, l]) => l < rounds);
      return `${total()} delivered; short clients: ${JSON.stringify(short.slice(0, 10))}`;
    });
    await sleep(300);
    for (let i = 0; i < n; i++) {
      assertEq(inbox[i].join(','), [...Array(rounds).keys()].map(r => `broadcast-${r}`).join(','), `client ${i} inbox`);
    }
    return `${n} subscribers x ${rounds} broadcasts, each exactly once in order`;
  } finally {
    await closeAll(clients);
  }
}

// A SEND to an application destination reaches subscribers of the routed destination.
async function appRoute() {
  assert(config.appSend && config.appRecv, 'INTEROP_APP_SEND and INTEROP_APP_RECV must be set');
  const room = `room-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const appSend = `${config.appSend}${room}`;
  const appRecv = `${config.appRecv}${room}`;
  const { client: sub } = await connectStompjs({ name: 'sub' });
  const { client: pub } = await connectStompjs({ name: 'pub' });
  try {
    const received = [];
    await subscribeConfirmed(sub, appRecv, m => received.push(m));
    await sendConfirmed(pub, { destination: appSend, body: '채팅방 1에 오신 것을 환영합니다' });
    await until(5000, `MESSAGE on ${appRecv} after SEND to ${appSend}`, () => received.length >= 1);
    assertEq(received[0].body, '채팅방 1에 오신 것을 환영합니다', 'routed body');
    assertEq(received[0].headers.destination, appRecv, 'routed MESSAGE destination');
    await sleep(200);
    assertEq(received.length, 1, 'routed message delivered once');
    return `${appSend} -> ${appRecv}`;
  } finally {
    await closeAll([sub, pub]);
  }
}

// Private messages: SEND /user/alice/... reaches every session of alice, only them, on
// the destination they subscribed (/user/...). With INTEROP_WS_URL_2 (a second
// instance on the same broker) alice's second session and bob are there, and the
// sender waits until the first instance's /api/stats (STATS_URL) lists both of
// alice's sessions: the instances learn each other's users through the broker.
async function userDest() {
  assert(config.userDest && config.userDest.startsWith('/user/'), 'INTEROP_USER_DEST (/user/...) must be set');
  const sendTo = `/user/alice/${config.userDest.slice('/user/'.length)}`;
  const names = ['alice', 'alice', 'bob'];
  const other = process.env.INTEROP_WS_URL_2;
  const urls = [config.wsUrl, other ?? config.wsUrl, other ?? config.wsUrl];
  const clients = [];
  const inbox = names.map(() => []);
  try {
    for (let i = 0; i < names.length; i++) {
      const { client } = await connectStompjs({ login: names[i], name: `${names[i]}${i}`, wsUrl: urls[i] });
      clients.push(client);
      await subscribeConfirmed(client, config.userDest, m => inbox[i].push(m));
    }
    if (other) {
      const listed = users => {
        const row = users?.listed.find(r => r.name === 'alice');
        return users?.scope === 'cluster' && row?.sessions === 2 && row?.instances === 2;
      };
      let users = null;
      const end = Date.now() + 10000;
      while (!listed(users)) {
        assert(Date.now() < end, `the first instance never listed alice with 2 sessions on 2 instances: ${JSON.stringify(users)}`);
        await sleep(100);
        users = (await (await fetch(process.env.STATS_URL)).json()).users;
      }
    }
    const { client: carol } = await connectStompjs({ login: 'carol', name: 'carol' });
    clients.push(carol);
    await sendConfirmed(carol, { destination: sendTo, body: '앨리스에게만 (for alice only)' });
    await until(5000, `both alice sessions to receive from ${sendTo}`, () => inbox[0].length >= 1 && inbox[1].length >= 1);
    await sleep(300);
    for (const i of [0, 1]) {
      assertEq(inbox[i].length, 1, `messages at alice session ${i}`);
      assertEq(inbox[i][0].body, '앨리스에게만 (for alice only)', `body at alice session ${i}`);
      assertEq(inbox[i][0].headers.destination, config.userDest, `destination seen by alice session ${i}`);
    }
    assertEq(inbox[2].length, 0, 'messages leaked to bob');
    return `${sendTo} -> 2 alice sessions on ${config.userDest}${other ? ' (one per instance)' : ''}, none to bob`;
  } finally {
    await closeAll(clients);
  }
}

// A stomp.py client (plain TCP) and this stompjs client (WebSocket) talk both ways.
async function crossPython() {
  const toJs = uniqueDest('py2js');
  const toPy = uniqueDest('js2py');
  const { client } = await connectStompjs({ name: 'js' });
  let child;
  try {
    const received = [];
    await subscribeConfirmed(client, toJs, m => received.push(m));
    child = spawn(config.python, [path.join(here, 'stomppy.py'), 'peer'], {
      env: { ...process.env, INTEROP_PEER_SEND: toJs, INTEROP_PEER_RECV: toPy },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', d => { out += d; });
    child.stderr.on('data', d => { out += d; });
    const exited = new Promise(resolve => child.on('exit', code => resolve(code)));
    const spawnError = new Promise((_, reject) => child.on('error', e => reject(new Error(`cannot run ${config.python}: ${e.message}`))));
    await Promise.race([
      spawnError,
      until(15000, `message from stomp.py on ${toJs}`, () => received.length >= 1, () => out),
    ]);
    assertEq(received[0].body, '파이썬에서 보낸 인사 (hello from stomp.py)', 'body from Python');
    assertEq(received[0].headers['x-sender'], 'stomp.py', 'custom header from Python');
    client.publish({
      destination: toPy,
      body: '자바스크립트의 답장 (reply from stompjs)',
      headers: { 'x-sender': 'stompjs' },
    });
    const code = await within(15000, 'stomp.py peer to exit', Promise.race([exited, spawnError]));
    assertEq(code, 0, `stomp.py peer exit code (output: ${out.trim()})`);
    return 'stomp.py -> stompjs -> stomp.py';
  } finally {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    await closeAll([client]);
  }
}

await main({
  versions,
  receipts,
  heartbeats,
  bodies,
  burst,
  fanout,
  'app-route': appRoute,
  'user-dest': userDest,
  'cross-python': crossPython,
});
