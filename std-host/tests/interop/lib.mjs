// Shared plumbing for the Node interop scenarios: configuration from the environment,
// stompjs clients over the `ws` package, and bounded waits.
//
// Every wait here has a deadline, so a scenario that stops making progress fails with a
// message saying what it was waiting for instead of hanging the test run. The same
// scripts run against RabbitMQ Web-STOMP and against stomp-relay; only the environment
// differs (see README.md beside this file).

import { Client, Versions } from '@stomp/stompjs';
import SockJS from 'sockjs-client';
import WebSocket from 'ws';

function env(name, fallback) {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : v;
}

export const config = {
  wsUrl: env('INTEROP_WS_URL', 'ws://127.0.0.1:15674/ws'),
  tcpAddr: env('INTEROP_TCP_ADDR', '127.0.0.1:61623'),
  login: env('INTEROP_LOGIN', undefined),
  passcode: env('INTEROP_PASSCODE', undefined),
  vhost: env('INTEROP_HOST', '/'),
  // Prefix under which a destination broadcasts to every subscriber: `/topic/` on
  // RabbitMQ, `/sub/` (or `/topic/`) on stomp-relay. Names after it never contain `/`
  // or `.` so they are valid on both.
  topic: env('INTEROP_TOPIC', '/topic/'),
  // Application route: a SEND to `${appSend}<room>` must reach subscribers of
  // `${appRecv}<room>`; <room> is unique per run so concurrent runs on one broker never
  // see each other's messages.
  appSend: env('INTEROP_APP_SEND', undefined),
  appRecv: env('INTEROP_APP_RECV', undefined),
  // User destinations: a subscriber of userDest receives what is sent to
  // `/user/<its login>/<userDest without /user/>`, and nobody else does.
  userDest: env('INTEROP_USER_DEST', undefined),
  python: env('INTEROP_PYTHON', 'python3'),
  verbose: env('INTEROP_VERBOSE', '') !== '',
};

export const ALL_VERSIONS = ['1.2', '1.1', '1.0'];

export function log(...args) {
  if (config.verbose) console.error('[interop]', ...args);
}

export function uniqueDest(tag) {
  const rand = Math.random().toString(36).slice(2, 10);
  return `${config.topic}interop-${tag}-${process.pid}-${rand}`;
}

export function connectHeaders(login = config.login) {
  const h = { host: config.vhost };
  if (login !== undefined) h.login = login;
  if (config.passcode !== undefined) h.passcode = config.passcode;
  return h;
}

export function sleep(ms) {
  return new Promise(r => setTimeout(r, ms));
}

// Resolves with `promise`, or rejects naming `what` after `ms` milliseconds.
export function within(ms, what, promise) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

// Polls `cond` until it holds; rejects naming `what` with `detail()` after `ms`.
export async function until(ms, what, cond, detail = () => '') {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) {
      const d = detail();
      throw new Error(`timed out after ${ms} ms waiting for ${what}${d ? `: ${d}` : ''}`);
    }
    await sleep(10);
  }
}

export function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}

export function assertEq(actual, expected, msg) {
  if (actual !== expected) {
    throw new Error(
      `assertion failed: ${msg}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`,
    );
  }
}

// A connected stompjs client plus what it observed. `versions` limits both the
// WebSocket subprotocols offered and the CONNECT accept-version header. `wsUrl`
// overrides INTEROP_WS_URL; `sockjs: { url, transport }` connects through
// sockjs-client forced to that one transport instead.
export async function connectStompjs(opts = {}) {
  const versions = opts.versions ?? ALL_VERSIONS;
  const observed = {
    errors: [],
    closes: [],
    heartbeatsReceived: 0,
    heartbeatLost: false,
    protocol: undefined,
    connected: undefined,
    debug: [],
  };
  const stompVersions = new Versions(versions);
  const wsUrl = opts.sockjs?.url ?? opts.wsUrl ?? config.wsUrl;
  const client = new Client({
    webSocketFactory: () => {
      if (opts.sockjs) {
        const sock = new SockJS(opts.sockjs.url, null, { transports: [opts.sockjs.transport] });
        observed.sockjs = sock;
        return sock;
      }
      const ws = new WebSocket(wsUrl, stompVersions.protocolVersions());
      ws.on('open', () => {
        observed.protocol = ws.protocol;
      });
      return ws;
    },
    stompVersions,
    connectHeaders: connectHeaders(opts.login),
    reconnectDelay: 0,
    heartbeatIncoming: opts.heartbeatIncoming ?? 0,
    heartbeatOutgoing: opts.heartbeatOutgoing ?? 0,
    forceBinaryWSFrames: opts.forceBinaryWSFrames ?? false,
    heartbeatToleranceMultiplier: opts.heartbeatToleranceMultiplier ?? 2,
    debug: msg => {
      // Bounded: a long scenario must not grow this without limit.
      if (observed.debug.length < 200) observed.debug.push(msg);
      log(opts.name ?? 'client', msg);
    },
    onStompError: frame => observed.errors.push(frame),
    onWebSocketClose: evt => observed.closes.push({ code: evt.code, reason: evt.reason }),
    onHeartbeatReceived: () => {
      observed.heartbeatsReceived += 1;
    },
    onHeartbeatLost: () => {
      observed.heartbeatLost = true;
    },
  });
  const connected = new Promise((resolve, reject) => {
    client.onConnect = frame => {
      observed.connected = frame;
      resolve();
    };
    client.onStompError = frame => {
      observed.errors.push(frame);
      reject(new Error(`ERROR frame instead of CONNECTED: ${frame.headers.message ?? ''} ${frame.body}`));
    };
    client.onWebSocketClose = evt => {
      observed.closes.push({ code: evt.code, reason: evt.reason });
      reject(new Error(`WebSocket closed before CONNECTED (code ${evt.code} ${evt.reason})`));
    };
  });
  client.activate();
  try {
    await within(opts.connectTimeout ?? 10000, `CONNECTED from ${wsUrl}`, connected);
  } catch (e) {
    await client.deactivate({ force: true }).catch(() => {});
    throw e;
  }
  // After the handshake keep recording instead of rejecting.
  client.onStompError = frame => observed.errors.push(frame);
  client.onWebSocketClose = evt => observed.closes.push({ code: evt.code, reason: evt.reason });
  return { client, observed };
}

// Subscribes and waits for the server's RECEIPT, so a following SEND is known to be
// routed to this subscription (STOMP orders a session's frames).
export async function subscribeConfirmed(client, destination, onMessage, headers = {}) {
  const receipt = `sub-${Math.random().toString(36).slice(2)}`;
  const got = new Promise(resolve => client.watchForReceipt(receipt, resolve));
  const sub = client.subscribe(destination, onMessage, { ...headers, receipt });
  await within(10000, `RECEIPT ${receipt} for SUBSCRIBE ${destination}`, got);
  return sub;
}

export async function sendConfirmed(client, params) {
  const receipt = `send-${Math.random().toString(36).slice(2)}`;
  const got = new Promise(resolve => client.watchForReceipt(receipt, resolve));
  client.publish({ ...params, headers: { ...(params.headers ?? {}), receipt } });
  return within(10000, `RECEIPT ${receipt} for SEND ${params.destination}`, got);
}

export async function closeAll(clients) {
  await Promise.all(
    clients.map(c => within(5000, 'DISCONNECT', c.deactivate()).catch(() => c.deactivate({ force: true }))),
  );
}

// Runs the named scenario from `scenarios`, printing one `ok`/`FAIL` line, and exits
// non-zero on failure. A hard deadline guards against anything the per-step waits miss.
export async function main(scenarios) {
  const name = process.argv[2];
  if (!name || !(name in scenarios)) {
    console.error(`usage: node ${process.argv[1]} <${Object.keys(scenarios).join('|')}>`);
    process.exit(2);
  }
  const hard = setTimeout(() => {
    console.error(`FAIL ${name}: hard deadline of 60 s exceeded`);
    process.exit(1);
  }, 60000);
  const started = Date.now();
  try {
    const detail = await scenarios[name]();
    console.log(`ok ${name} (${Date.now() - started} ms)${detail ? `: ${detail}` : ''}`);
    clearTimeout(hard);
    process.exit(0);
  } catch (e) {
    console.error(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  }
}
