// Application proxy round trips (issue 14's benchmark row), run by
// scripts/bench-proxy.sh: the same Node back end (backend.mjs, /app/echo) asked
//   direct:  by HTTP POSTs of the JSON stomp-relay sends (keep-alive, like the server's
//            pooled client), and
//   relay:   through stomp-relay: a stompjs SEND to /app/echo with a receipt; the
//            RECEIPT comes after the back end answered, so SEND -> RECEIPT is one
//            proxied round trip,
// from the same process, the same number of concurrent loops, for the same time. Prints
// one `key=value` line: round trips/s and p50/p99 of each, the back end's own handling
// time (from its /stats, both phases), and the latency added to it on the relay path
// (relay round trip minus the back end's own time, per quantile).
//
// Environment: BENCH_WS_URL (stomp-relay), BACKEND_URL (http://host:port),
// BENCH_CONCURRENCY [16], BENCH_SECONDS [8].

import http from 'node:http';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';

const WS_URL = process.env.BENCH_WS_URL;
const BACKEND = process.env.BACKEND_URL;
const C = Number(process.env.BENCH_CONCURRENCY ?? 16);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
if (!WS_URL || !BACKEND) {
  console.error('BENCH_WS_URL and BACKEND_URL must be set');
  process.exit(2);
}

function quantile(sorted, q) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : NaN;
}

// Runs `C` loops of `once()` for SECONDS after a 1 s warm-up; latencies in ms.
async function measure(once) {
  const warm = Date.now() + 1000;
  while (Date.now() < warm) await once();
  const lat = [];
  const end = performance.now() + SECONDS * 1000;
  await Promise.all(Array.from({ length: C }, async () => {
    while (performance.now() < end) {
      const t = performance.now();
      await once();
      lat.push(performance.now() - t);
    }
  }));
  lat.sort((a, b) => a - b);
  return { rate: lat.length / SECONDS, p50: quantile(lat, 0.5), p99: quantile(lat, 0.99) };
}

const body = 'x'.repeat(256);
const request = JSON.stringify({
  session: '0', user: null, destination: '/app/echo', vars: {}, headers: { 'content-type': 'text/plain' }, body,
});
// node:http with a keep-alive agent: the leanest HTTP/1.1 client Node has (fetch costs
// this process more than the relay's whole round trip).
const agent = new http.Agent({ keepAlive: true, maxSockets: C });
const url = new URL(`${BACKEND}/app`);
const direct = await measure(() => new Promise((resolve, reject) => {
  const req = http.request({
    agent, host: url.hostname, port: url.port, path: url.pathname, method: 'POST',
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(request) },
  }, res => { res.resume(); res.on('end', resolve); });
  req.on('error', reject);
  req.end(request);
}));

const clients = await Promise.all(Array.from({ length: C }, () => new Promise((resolve, reject) => {
  const client = new Client({
    webSocketFactory: () => new WebSocket(WS_URL, ['v12.stomp']),
    reconnectDelay: 0, heartbeatIncoming: 0, heartbeatOutgoing: 0, debug: () => {},
  });
  client.onConnect = () => resolve(client);
  client.onStompError = f => reject(new Error(f.headers.message));
  client.activate();
})));
let next = 0;
let seq = 0;
const relay = await measure(() => {
  const client = clients[next++ % C];
  const receipt = `r${seq++}`;
  return new Promise(resolve => {
    client.watchForReceipt(receipt, resolve);
    client.publish({ destination: '/app/echo', body, headers: { receipt } });
  });
});
await Promise.all(clients.map(c => c.deactivate()));

const own = (await (await fetch(`${BACKEND}/stats`)).json()).handling_us;
const f = x => x.toFixed(3);
console.log([
  `concurrency=${C}`, `seconds=${SECONDS}`,
  `direct_rps=${direct.rate.toFixed(0)}`, `direct_p50_ms=${f(direct.p50)}`, `direct_p99_ms=${f(direct.p99)}`,
  `relay_rps=${relay.rate.toFixed(0)}`, `relay_p50_ms=${f(relay.p50)}`, `relay_p99_ms=${f(relay.p99)}`,
  `backend_p50_ms=${f(own.p50 / 1000)}`, `backend_p99_ms=${f(own.p99 / 1000)}`,
  // Everything but the back end's own work: client, WebSocket, stomp-relay, the HTTP hop.
  `added_p50_ms=${f(relay.p50 - own.p50 / 1000)}`, `added_p99_ms=${f(relay.p99 - own.p99 / 1000)}`,
].join(' '));
process.exit(0);
