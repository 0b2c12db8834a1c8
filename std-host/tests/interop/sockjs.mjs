// SockJS interop: the real sockjs-client + @stomp/stompjs, forced to one SockJS
// transport at a time, exchanging messages with a plain-WebSocket stompjs client.
//
// Usage: node sockjs.mjs <transport>, one of websocket, xhr-streaming, xhr-polling,
// eventsource. SOCKJS_URL is the SockJS endpoint (http://HOST/ws-stomp); the plain
// client connects to INTEROP_WS_URL_2 when set (a second instance: the message must
// cross the broker) and INTEROP_WS_URL otherwise. STATS_URL is the SockJS instance's
// /api/stats, where the session must be listed with its transport.

import {
  assert,
  assertEq,
  closeAll,
  connectStompjs,
  main,
  sendConfirmed,
  subscribeConfirmed,
  uniqueDest,
  until,
} from './lib.mjs';

const sockjsUrl = process.env.SOCKJS_URL;
const plainUrl = process.env.INTEROP_WS_URL_2 || process.env.INTEROP_WS_URL;
const statsUrl = process.env.STATS_URL;

// 40 bodies of 4 KiB from the plain client: more than one 128 KiB streaming response,
// so xhr-streaming and eventsource must roll over to the next response without loss.
const BURST = 40;
const BIG = 4096;

async function exchange(transport) {
  assert(sockjsUrl && plainUrl && statsUrl, 'SOCKJS_URL, INTEROP_WS_URL and STATS_URL are set');
  const a = await connectStompjs({ name: `sockjs-${transport}`, sockjs: { url: sockjsUrl, transport } });
  const b = await connectStompjs({ name: 'plain', wsUrl: plainUrl });
  try {
    assertEq(a.observed.sockjs.transport, transport, 'transport sockjs-client settled on');
    const dest = uniqueDest(`sockjs-${transport}`);
    const gotA = [];
    const gotB = [];
    await subscribeConfirmed(a.client, dest, m => gotA.push(m.body));
    await subscribeConfirmed(b.client, dest, m => gotB.push(m.body));

    // Both directions, with text JSON and STOMP must both carry intact.
    const fromA = ['A-0 안녕하세요', 'A-1 "quoted" \\ back\nslash', 'A-2 \u2028 line sep'];
    for (const body of fromA) await sendConfirmed(a.client, { destination: dest, body });
    const fromB = [];
    for (let i = 0; i < BURST; i++) {
      const body = `B-${i} ` + String.fromCharCode(97 + (i % 26)).repeat(BIG);
      fromB.push(body);
      b.client.publish({ destination: dest, body });
    }
    await sendConfirmed(b.client, { destination: dest, body: 'B-end' });
    const want = fromA.length + BURST + 1;
    const detail = () => `A has ${gotA.length}, B has ${gotB.length} of ${want}`;
    await until(20000, 'every message at both clients', () => gotA.length >= want && gotB.length >= want, detail);
    for (const [who, got] of [['sockjs', gotA], ['plain', gotB]]) {
      assertEq(JSON.stringify(got.filter(x => x.startsWith('A-'))), JSON.stringify(fromA), `${who} got A's messages in order`);
      assertEq(JSON.stringify(got.filter(x => x.startsWith('B-') && x !== 'B-end')), JSON.stringify(fromB), `${who} got B's burst in order`);
      assertEq(got.length, want, `${who} got each message once`);
    }

    // The server lists the session with its transport.
    const id = a.observed.connected.headers.session;
    const stats = await (await fetch(statsUrl)).json();
    const row = stats.sessions.listed.find(s => s.id === id);
    assert(row, `session ${id} in /api/stats`);
    assertEq(row.transport, `sockjs-${transport}`, '/api/stats transport');
    return `${want} messages each way over ${transport}`;
  } finally {
    await closeAll([a.client, b.client]);
  }
}

main({
  websocket: () => exchange('websocket'),
  'xhr-streaming': () => exchange('xhr-streaming'),
  'xhr-polling': () => exchange('xhr-polling'),
  eventsource: () => exchange('eventsource'),
});
