// Interop scenarios that need control over the bytes on the wire: a raw `ws` client
// that writes STOMP frames by hand.
//
// Usage: node raw-ws.mjs <scenario>; configuration from INTEROP_* variables (README.md).
// These check what no well-behaved client library would send: frames split across and
// batched within WebSocket messages, and malformed frames, which must be answered with
// an ERROR frame carrying a `message` header and then a closed connection.

import WebSocket from 'ws';
import { assert, assertEq, config, main, uniqueDest, until, within } from './lib.mjs';

// Incremental STOMP frame reader over a byte stream; EOLs between frames are heart-beats.
class FrameReader {
  constructor() {
    this.buf = Buffer.alloc(0);
    this.frames = [];
    this.heartbeats = 0;
  }

  push(chunk) {
    this.buf = Buffer.concat([this.buf, Buffer.from(chunk)]);
    for (;;) {
      while (this.buf.length && (this.buf[0] === 0x0a || this.buf[0] === 0x0d)) {
        if (this.buf[0] === 0x0a) this.heartbeats += 1;
        this.buf = this.buf.subarray(1);
      }
      const frame = this.parseOne();
      if (!frame) return;
      this.frames.push(frame);
    }
  }

  parseOne() {
    const headEnd = this.buf.indexOf('\n\n');
    const headEndCr = this.buf.indexOf('\r\n\r\n');
    let end;
    let sep;
    if (headEndCr !== -1 && (headEnd === -1 || headEndCr < headEnd)) {
      end = headEndCr;
      sep = 4;
    } else if (headEnd !== -1) {
      end = headEnd;
      sep = 2;
    } else {
      return null;
    }
    const lines = this.buf.subarray(0, end).toString('utf8').split(/\r?\n/);
    const command = lines[0];
    const headers = {};
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      const k = line.slice(0, i);
      // STOMP 1.2 escaping (these connections negotiate 1.2); first occurrence wins.
      const v = line.slice(i + 1).replace(/\\([nrc\\])/g, (_, c) => ({ n: '\n', r: '\r', c: ':', '\\': '\\' })[c]);
      if (!(k in headers)) headers[k] = v;
    }
    const bodyStart = end + sep;
    let bodyEnd;
    if (headers['content-length'] !== undefined) {
      bodyEnd = bodyStart + parseInt(headers['content-length'], 10);
      if (this.buf.length < bodyEnd + 1) return null;
    } else {
      bodyEnd = this.buf.indexOf(0, bodyStart);
      if (bodyEnd === -1) return null;
    }
    const body = this.buf.subarray(bodyStart, bodyEnd);
    this.buf = this.buf.subarray(bodyEnd + 1);
    return { command, headers, body: Buffer.from(body) };
  }
}

function frame(command, headers, body = '') {
  let s = `${command}\n`;
  for (const [k, v] of Object.entries(headers)) s += `${k}:${v}\n`;
  return Buffer.concat([Buffer.from(`${s}\n`), Buffer.from(body), Buffer.from([0])]);
}

function connectFrame(extra = {}) {
  const h = { 'accept-version': '1.2', host: config.vhost, 'heart-beat': '0,0' };
  if (config.login !== undefined) h.login = config.login;
  if (config.passcode !== undefined) h.passcode = config.passcode;
  return frame('CONNECT', { ...h, ...extra });
}

// Opens a raw WebSocket with the v12.stomp subprotocol and records frames and the close.
async function openRaw(protocols = ['v12.stomp']) {
  const ws = new WebSocket(config.wsUrl, protocols);
  const reader = new FrameReader();
  const state = { ws, reader, closed: null, messages: 0 };
  ws.on('message', data => {
    state.messages += 1;
    reader.push(data);
  });
  ws.on('close', (code, reason) => {
    state.closed = { code, reason: reason.toString() };
  });
  ws.on('error', e => {
    state.error = e;
  });
  await within(10000, `WebSocket open to ${config.wsUrl}`, new Promise((resolve, reject) => {
    ws.on('open', resolve);
    ws.on('error', reject);
  }));
  assertEq(ws.protocol, protocols[0] ?? '', 'negotiated subprotocol');
  return state;
}

function send(state, bytes, binary = false) {
  return new Promise((resolve, reject) =>
    state.ws.send(bytes, { binary }, e => (e ? reject(e) : resolve())),
  );
}

const describe = frames =>
  frames.map(f => `${f.command}${f.headers.message ? `(${f.headers.message})` : ''}`).join(' ') || 'none';

async function handshake(state) {
  await send(state, connectFrame());
  await until(10000, 'CONNECTED', () => state.reader.frames.length >= 1);
  assertEq(state.reader.frames[0].command, 'CONNECTED', 'first server frame');
  state.reader.frames.shift();
}

// One CONNECT across three messages (text and binary mixed), then three frames in one
// message, then a SEND split mid-header and mid-body: all understood as one stream.
async function splitBatch() {
  const s = await openRaw();
  try {
    const c = connectFrame();
    const a = Math.floor(c.length / 3);
    const b = Math.floor((2 * c.length) / 3);
    await send(s, c.subarray(0, a));
    await send(s, c.subarray(a, b), true);
    await send(s, c.subarray(b));
    await until(10000, 'CONNECTED after a CONNECT split over 3 messages', () => s.reader.frames.length >= 1, () => describe(s.reader.frames));
    assertEq(s.reader.frames[0].command, 'CONNECTED', 'reply to split CONNECT');
    s.reader.frames.shift();

    const dest = uniqueDest('batch');
    const batched = Buffer.concat([
      frame('SUBSCRIBE', { id: 'sub-0', destination: dest, receipt: 'r-sub' }),
      frame('SEND', { destination: dest, receipt: 'r-send-1', 'content-type': 'text/plain' }, 'batched-1'),
      frame('SEND', { destination: dest, 'content-type': 'text/plain' }, 'batched-2'),
    ]);
    await send(s, batched);
    const split = frame('SEND', { destination: dest, receipt: 'r-send-3', 'content-type': 'text/plain' }, 'split-3 한국어');
    const headerCut = 10; // inside "destination"
    const bodyCut = split.length - 6; // inside a multi-byte UTF-8 character of the body
    // A text WebSocket message must be valid UTF-8 on its own (close 1007 otherwise), so
    // the two pieces that cut a character in half travel as binary messages.
    await send(s, split.subarray(0, headerCut));
    await send(s, split.subarray(headerCut, bodyCut), true);
    await send(s, split.subarray(bodyCut), true);

    const want = () => {
      const f = s.reader.frames;
      return f.filter(x => x.command === 'MESSAGE').length >= 3 && f.filter(x => x.command === 'RECEIPT').length >= 3;
    };
    await until(10000, '3 MESSAGEs and 3 RECEIPTs', want, () => `frames: ${describe(s.reader.frames)}, closed: ${JSON.stringify(s.closed)}`);
    const frames = s.reader.frames;
    const errors = frames.filter(f => f.command === 'ERROR');
    assertEq(errors.length, 0, `ERROR frames (${describe(errors)})`);
    const receipts = frames.filter(f => f.command === 'RECEIPT').map(f => f.headers['receipt-id']);
    assertEq(receipts.join(','), 'r-sub,r-send-1,r-send-3', 'receipts in order');
    const bodies = frames.filter(f => f.command === 'MESSAGE').map(f => f.body.toString('utf8'));
    assertEq(bodies.join(','), 'batched-1,batched-2,split-3 한국어', 'messages in order and intact');
    // The subscription receipt precedes the first delivery.
    assertEq(frames[0].command, 'RECEIPT', 'first frame after SUBSCRIBE');
    assertEq(s.closed, null, 'connection still open');
    return `frames arrived over ${s.messages} server messages`;
  } finally {
    s.ws.terminate();
  }
}

// A frame larger than the server's limit (64 KiB by default), arriving in 16 KiB
// WebSocket messages so only reassembly reveals its size, gets an ERROR naming the limit
// and a close; a frame just under the limit on another connection is delivered.
async function oversize() {
  const limit = parseInt(process.env.INTEROP_MAX_FRAME ?? '65536', 10);
  const dest = uniqueDest('big');
  const ok = await openRaw();
  const big = await openRaw();
  try {
    await handshake(ok);
    await handshake(big);
    await send(ok, frame('SUBSCRIBE', { id: '0', destination: dest, receipt: 'r-sub' }));
    await until(10000, 'RECEIPT for SUBSCRIBE', () => ok.reader.frames.length >= 1);
    ok.reader.frames.length = 0;
    const head = `SEND\ndestination:${dest}\ncontent-type:application/octet-stream\n`;
    // Just under: the whole frame (command, headers, body, NUL) is limit - 64 bytes.
    const fits = Buffer.concat([
      Buffer.from(`${head}\n`),
      Buffer.alloc(limit - 64 - Buffer.byteLength(`${head}\n`) - 1, 0x61),
      Buffer.from([0]),
    ]);
    await send(ok, fits);
    await until(10000, 'the frame just under the limit to be delivered', () => ok.reader.frames.length >= 1, () => `closed: ${JSON.stringify(ok.closed)}`);
    assertEq(ok.reader.frames[0].command, 'MESSAGE', 'reply to a frame under the limit');
    const over = Buffer.concat([Buffer.from(`${head}\n`), Buffer.alloc(limit + 1024, 0x62), Buffer.from([0])]);
    for (let at = 0; at < over.length && big.closed === null; at += 16384) {
      await send(big, over.subarray(at, at + 16384), true).catch(() => {});
    }
    await until(10000, 'ERROR and close for the oversized frame', () => big.closed !== null, () => describe(big.reader.frames));
    const errors = big.reader.frames.filter(f => f.command === 'ERROR');
    assertEq(errors.length, 1, `ERROR frames for the oversized frame (got ${describe(big.reader.frames)})`);
    const text = `${errors[0].headers.message} ${errors[0].body.toString()}`;
    assert(/65536|64 ?KiB/i.test(text), `ERROR names the ${limit}-byte limit: ${text}`);
    assertEq(big.reader.frames.filter(f => f.command === 'MESSAGE').length, 0, 'deliveries of the oversized frame');
    await new Promise(r => setTimeout(r, 200));
    assertEq(ok.reader.frames.length, 1, 'the subscriber saw nothing of the oversized frame');
    return `${fits.length}-byte frame delivered; ${over.length}-byte frame -> ERROR(${errors[0].headers.message}) close ${big.closed.code}`;
  } finally {
    ok.ws.terminate();
    big.ws.terminate();
  }
}

// A WebSocket client offering no subprotocol negotiates the version by accept-version,
// the highest common one winning, and works like any other.
async function noSubprotocol() {
  const s = await openRaw([]);
  try {
    await send(s, connectFrame({ 'accept-version': '1.0,1.1,1.2' }));
    await until(10000, 'CONNECTED', () => s.reader.frames.length >= 1, () => describe(s.reader.frames));
    const connected = s.reader.frames.shift();
    assertEq(connected.command, 'CONNECTED', 'reply to CONNECT without subprotocol');
    assertEq(connected.headers.version, '1.2', 'negotiated version');
    const dest = uniqueDest('noproto');
    await send(s, Buffer.concat([
      frame('SUBSCRIBE', { id: '0', destination: dest, receipt: 'r-sub' }),
      frame('SEND', { destination: dest }, 'no subprotocol'),
    ]));
    await until(10000, 'RECEIPT and MESSAGE', () => s.reader.frames.length >= 2, () => describe(s.reader.frames));
    assertEq(s.reader.frames[0].command, 'RECEIPT', 'first frame');
    assertEq(s.reader.frames[1].command, 'MESSAGE', 'second frame');
    assertEq(s.reader.frames[1].body.toString(), 'no subprotocol', 'body');
    return `version ${connected.headers.version} with no subprotocol`;
  } finally {
    s.ws.terminate();
  }
}

// Each malformed input, on its own connection, gets ERROR with a message header and then
// the server closes the connection.
const MALFORMED = {
  'unknown command': () => Buffer.from('BOGUS\nfoo:bar\n\nbody\0'),
  'header line without colon': () => Buffer.from(`SEND\ndestination:${uniqueDest('bad')}\nthis-is-not-a-header\n\nbody\0`),
  'content-length disagreeing with the NUL': () =>
    Buffer.from(`SEND\ndestination:${uniqueDest('bad')}\ncontent-length:3\n\nabcdefgh\0`),
  'SEND before CONNECT': null,
};

async function malformed() {
  const results = [];
  for (const [name, make] of Object.entries(MALFORMED)) {
    const s = await openRaw();
    try {
      if (make) {
        await handshake(s);
        await send(s, make());
      } else {
        await send(s, frame('SEND', { destination: uniqueDest('early') }, 'too early'));
      }
      await until(
        10000,
        `ERROR and close after ${name}`,
        () => s.closed !== null,
        () => `frames so far: ${describe(s.reader.frames)}`,
      );
      const errors = s.reader.frames.filter(f => f.command === 'ERROR');
      assertEq(errors.length, 1, `ERROR frames for ${name} (got ${describe(s.reader.frames)})`);
      assert(errors[0].headers.message && errors[0].headers.message.length > 0, `ERROR for ${name} has a message header`);
      assertEq(
        s.reader.frames.filter(f => f.command === 'MESSAGE' || f.command === 'RECEIPT').length,
        0,
        `deliveries after ${name}`,
      );
      results.push(`${name} -> ERROR(${errors[0].headers.message}) close ${s.closed.code}`);
    } finally {
      s.ws.terminate();
    }
  }
  // The server is still serving other clients afterwards.
  const s = await openRaw();
  try {
    await handshake(s);
  } finally {
    s.ws.terminate();
  }
  return results.join('; ');
}

// The server holds clients to the heart-beats they promise: one that keeps sending EOLs
// stays connected, one that goes silent is disconnected. Run with a short server
// heart-beat; the client promises one every 300 ms.
async function heartbeatEnforced() {
  const promise = 300;
  const beating = await openRaw();
  const silent = await openRaw();
  let timer;
  try {
    for (const s of [beating, silent]) {
      await send(s, connectFrame({ 'heart-beat': `${promise},0` }));
      await until(10000, 'CONNECTED', () => s.reader.frames.length >= 1);
      assertEq(s.reader.frames[0].command, 'CONNECTED', 'first server frame');
    }
    const hb = silent.reader.frames[0].headers['heart-beat'] ?? '0,0';
    const sy = parseInt(hb.split(',')[1], 10);
    assert(sy > 0, `server wants client heart-beats (CONNECTED heart-beat:${hb}); start it with a short heart-beat`);
    const started = Date.now();
    timer = setInterval(() => beating.ws.send('\n'), promise);
    const limit = Math.max(promise, sy) * 3 + 5000;
    await until(limit, 'the server to disconnect the silent client', () => silent.closed !== null);
    const silentFor = Date.now() - started;
    // The beating client outlives the silent one by a clear margin.
    await new Promise(r => setTimeout(r, Math.max(2000, silentFor)));
    assertEq(beating.closed, null, `the client sending heart-beats was closed (${JSON.stringify(beating.closed)})`);
    const errors = silent.reader.frames.filter(f => f.command === 'ERROR');
    return `heart-beat:${hb}; silent client closed after ${silentFor} ms (${describe(errors)}, code ${silent.closed.code}); beating client still open`;
  } finally {
    clearInterval(timer);
    beating.ws.terminate();
    silent.ws.terminate();
  }
}

// A subscriber that stops reading is cut off by the server while subscribers that keep
// reading get every message, in order. Run the server with a small send buffer and a
// short send time limit. Bounded: COUNT messages of SIZE bytes (16 MiB in all, more than
// loopback socket buffers absorb, so the server's own buffer must fill).
async function slowConsumer() {
  const COUNT = 2000;
  const SIZE = 8192;
  const dest = uniqueDest('slow');
  const slow = await openRaw();
  const fast = [];
  let pub;
  try {
    await handshake(slow);
    await send(slow, frame('SUBSCRIBE', { id: 'slow', destination: dest, receipt: 'r-slow' }));
    await until(10000, 'RECEIPT for the slow SUBSCRIBE', () => slow.reader.frames.some(f => f.command === 'RECEIPT'));
    slow.reader.frames.length = 0;
    // Stop reading: from here on the server's writes to this client back up.
    slow.ws.pause();

    const counts = [];
    for (let i = 0; i < 3; i++) {
      const s = await openRaw();
      fast.push(s);
      await handshake(s);
      await send(s, frame('SUBSCRIBE', { id: `fast${i}`, destination: dest, receipt: `r-fast${i}` }));
      await until(10000, `RECEIPT for fast subscriber ${i}`, () => s.reader.frames.some(f => f.command === 'RECEIPT'));
      s.reader.frames.length = 0;
      counts.push(0);
    }
    pub = await openRaw();
    await handshake(pub);
    const filler = 'x'.repeat(SIZE - 12);
    // Drain parsed frames as they come so memory stays bounded; check order on the way.
    const seen = fast.map(() => 0);
    const check = want => {
      fast.forEach((s, i) => {
        for (const f of s.reader.frames) {
          assertEq(f.command, 'MESSAGE', `frame ${seen[i]} to fast subscriber ${i}`);
          assertEq(f.body.subarray(0, 11).toString(), String(seen[i]).padStart(11, '0'), `order at fast subscriber ${i}`);
          assertEq(f.body.length, SIZE, 'body size');
          seen[i] += 1;
        }
        s.reader.frames.length = 0;
        assert(s.closed === null, `fast subscriber ${i} was closed (${JSON.stringify(s.closed)}) after ${seen[i]} messages`);
      });
      return seen.every(n => n >= want);
    };
    // The publisher waits for the readers that keep up (16 messages, 128 KiB, in flight at
    // most), so only the paused subscriber falls behind.
    const BATCH = 16;
    for (let i = 0; i < COUNT; i += BATCH) {
      for (let j = i; j < Math.min(COUNT, i + BATCH); j++) {
        const body = `${String(j).padStart(11, '0')} ${filler}`;
        await send(pub, frame('SEND', { destination: dest, 'content-type': 'text/plain' }, body));
      }
      const want = Math.min(COUNT, i + BATCH);
      await until(10000, `${want} messages at each fast subscriber`, () => check(want), () => `got ${seen.join(', ')}`);
    }
    fast.forEach((s, i) => assertEq(s.closed, null, `fast subscriber ${i} was closed`));
    // Now look at what the slow one was sent before the server gave up on it.
    slow.ws.resume();
    await until(15000, 'the server to close the slow subscriber', () => slow.closed !== null, () => `it has ${slow.reader.frames.length} messages`);
    const got = slow.reader.frames.filter(f => f.command === 'MESSAGE').length;
    assert(got < COUNT, `slow subscriber was closed but received all ${COUNT} messages`);
    // 4500 when the close frame got through once reading resumed; 1006 when the server had
    // already given up on the blocked socket and dropped it (it cannot deliver a close frame
    // to a client that does not read). Either way the server cut it off, which is the point.
    assert([4500, 1006].includes(slow.closed.code), `close code for the slow subscriber was ${slow.closed.code}`);
    return `3 fast subscribers got ${COUNT} x ${SIZE} B in order; the paused one was closed ${slow.closed.code} after ${got}`;
  } finally {
    for (const s of [slow, ...fast, pub]) if (s) s.ws.terminate();
  }
}

await main({
  'split-batch': splitBatch,
  'no-subprotocol': noSubprotocol,
  oversize,
  malformed,
  'heartbeat-enforced': heartbeatEnforced,
  'slow-consumer': slowConsumer,
});
