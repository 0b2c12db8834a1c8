// A small application back end in Node (express) behind stomp-relay's HTTP proxies,
// as a team would write one: `node backend.mjs` listens on BACKEND_ADDR (default
// 127.0.0.1:0) and prints `listening <port>` once ready. docs/proxies.md describes the
// JSON; this file is both a test fixture and a worked example of it.
//
//   POST /connect    login `banned` is refused; `admin*` gets claim role=admin; everyone
//                    else role=member. Every allowed session gets CONNECTED header
//                    `x-backend: node`. A request that carries the passcode is refused
//                    (the server must not pass it on unless configured).
//   POST /subscribe  /topic/secret.** refused; /app/init/{room} answered with a first
//                    message; /topic/** allowed with a `welcome` first message.
//   POST /app        /app/chat/message: published to /topic/chat (JSON from the sender)
//                    and acknowledged to the sender's /user/queue/ack (@SendTo and
//                    @SendToUser); /app/echo: acknowledged only; /app/bad: a refusal;
//                    /app/slow: answers after SLOW_MS; /app/fail: HTTP 500.
//   GET  /stats      calls per endpoint and the back end's own handling time.

import express from 'express';

const SLOW_MS = Number(process.env.BACKEND_SLOW_MS ?? 3000);
const [host, port] = (process.env.BACKEND_ADDR ?? '127.0.0.1:0').split(':');

const stats = { connect: 0, subscribe: 0, app: 0, handlingNs: [] };

const app = express();
app.use(express.json({ limit: '4mb' }));

// Times each answer as the back end itself sees it (request parsed to answer written).
function timed(handler) {
  return async (req, res) => {
    const start = process.hrtime.bigint();
    await handler(req, res);
    stats.handlingNs.push(Number(process.hrtime.bigint() - start));
    if (stats.handlingNs.length > 200000) stats.handlingNs.splice(0, 100000);
  };
}

app.post('/connect', timed((req, res) => {
  stats.connect++;
  const { headers = {}, user, remote_addr: remote, transport } = req.body;
  if ('passcode' in headers) {
    return res.json({ error: { message: 'the passcode must not reach the back end' } });
  }
  const login = headers.login ?? user ?? '';
  if (login === 'banned') {
    return res.json({ error: { message: `user ${login} is banned by the back end` } });
  }
  const role = login.startsWith('admin') ? 'admin' : 'member';
  res.json({
    result: {
      user: login || undefined,
      claims: { role },
      headers: { 'x-backend': 'node', 'x-remote': `${transport} ${remote}` },
    },
  });
}));

app.post('/subscribe', timed((req, res) => {
  stats.subscribe++;
  const { destination, user, vars = {} } = req.body;
  if (destination.startsWith('/topic/secret')) {
    return res.json({ error: { message: `no access to ${destination}` } });
  }
  if (destination.startsWith('/app/init/')) {
    return res.json({
      result: {
        reply: {
          body: JSON.stringify({ room: vars.room ?? null, members: [user] }),
          headers: { 'content-type': 'application/json' },
        },
      },
    });
  }
  res.json({ result: { reply: { body: `welcome ${user ?? 'anonymous'}` } } });
}));

app.post('/app', timed(async (req, res) => {
  stats.app++;
  const { destination, user, body, headers = {} } = req.body;
  switch (destination) {
    case '/app/chat/message': {
      const text = JSON.parse(body ?? '{}').text;
      return res.json({
        result: {
          publish: [{
            destination: '/topic/chat',
            body: JSON.stringify({ from: user, text }),
            headers: { 'content-type': 'application/json' },
          }],
          reply: [{ destination: '/queue/ack', body: `ack ${text}` }],
        },
      });
    }
    case '/app/echo':
      return res.json({
        result: { reply: [{ destination: '/queue/echo', body, headers: { 'x-seq': headers['x-seq'] ?? '' }, session_only: true }] },
      });
    case '/app/bad':
      return res.json({ error: { message: 'the back end refused this message' } });
    case '/app/slow':
      await new Promise(r => setTimeout(r, SLOW_MS));
      return res.json({ result: {} });
    case '/app/fail':
      return res.status(500).send('internal error');
    default:
      return res.json({ result: {} });
  }
}));

app.get('/stats', (req, res) => {
  const sorted = [...stats.handlingNs].sort((a, b) => a - b);
  const q = p => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] : 0);
  res.json({
    connect: stats.connect,
    subscribe: stats.subscribe,
    app: stats.app,
    handling_us: { p50: q(0.5) / 1000, p99: q(0.99) / 1000 },
  });
});

const server = app.listen(Number(port), host, () => {
  console.log(`listening ${server.address().port}`);
});
server.keepAliveTimeout = 120_000;
