// stomp-relay chat demo: rooms are broker destinations /sub/chat/{room}; messages are
// sent to the application destination /pub/chat/{room}, which the server routes to
// /sub/chat/{room} (through the external broker in relay mode, so every instance's
// subscribers get them). Built on the vendored @stomp/stompjs UMD bundle (window.StompJs);
// when the server speaks SockJS (data-sockjs on <body>) and the page asks for it
// (?transport=sockjs) or the browser has no WebSocket, it connects through the vendored
// sockjs-client instead, as a Spring front-end with `new SockJS(url)` does.
'use strict';

(function () {
  const ROOM_RE = /^[A-Za-z0-9_-]{1,32}$/;
  // Reconnect backoff: 0.5 s doubling up to 10 s (stompjs's EXPONENTIAL mode); the page
  // mirrors the delay to show it.
  const FIRST_DELAY = 500;
  const MAX_DELAY = 10000;
  const MAX_SHOWN = 500;

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);

  let room = ROOM_RE.test(params.get('room') || '') ? params.get('room') : 'lobby';
  let name = (params.get('name') || localStorage.getItem('stomp-relay.name') || '').trim();
  if (!name) name = 'guest-' + Math.random().toString(36).slice(2, 6);
  name = Array.from(name).slice(0, 20).join('');
  const knownRooms = new Set(['lobby', 'random', room]);

  let subscription = null;
  let nextDelay = FIRST_DELAY;
  let attempt = 0;
  let countdown = null;

  const endpoint = document.body.dataset.endpoint || '/ws';
  const wsUrl = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + endpoint;
  const useSockJS =
    document.body.dataset.sockjs === 'true' &&
    typeof window.SockJS === 'function' &&
    (params.get('transport') === 'sockjs' || typeof window.WebSocket !== 'function');

  function setState(state, text) {
    const el = $('state');
    el.dataset.state = state;
    $('state-text').textContent = text;
    const connected = state === 'connected';
    $('text').disabled = !connected;
    $('send').disabled = !connected;
  }

  function renderRooms() {
    const ul = $('rooms');
    ul.textContent = '';
    for (const r of knownRooms) {
      const li = document.createElement('li');
      const a = document.createElement('a');
      a.href = '?room=' + encodeURIComponent(r);
      a.textContent = '#' + r;
      if (r === room) a.className = 'active';
      a.addEventListener('click', (e) => {
        e.preventDefault();
        join(r);
      });
      li.appendChild(a);
      ul.appendChild(li);
    }
  }

  function two(n) {
    return String(n).padStart(2, '0');
  }

  function clock(ms) {
    const d = new Date(ms);
    return two(d.getHours()) + ':' + two(d.getMinutes()) + ':' + two(d.getSeconds());
  }

  function show(kind, from, text, at) {
    const ol = $('messages');
    const li = document.createElement('li');
    li.className = 'msg ' + kind;
    li.dataset.room = room;
    if (kind !== 'note') {
      const who = document.createElement('span');
      who.className = 'from';
      who.textContent = from;
      li.appendChild(who);
    }
    const when = document.createElement('time');
    when.textContent = clock(at || Date.now());
    li.appendChild(when);
    const body = document.createElement('div');
    body.className = 'text';
    body.textContent = text; // never innerHTML: message text is untrusted
    li.appendChild(body);
    ol.appendChild(li);
    while (ol.children.length > MAX_SHOWN) ol.removeChild(ol.firstChild);
    ol.scrollTop = ol.scrollHeight;
  }

  function onMessage(message) {
    // Chat messages are JSON {from, text, sentAt}; anything else (e.g. a plain text
    // pushed through POST /api/publish) is shown as it came.
    let from = message.headers.from || 'server';
    let text = message.body;
    let at = Date.now();
    const type = message.headers['content-type'] || '';
    if (type.startsWith('application/json')) {
      try {
        const m = JSON.parse(message.body);
        if (m && typeof m.text === 'string') {
          from = typeof m.from === 'string' ? m.from : from;
          text = m.text;
          if (typeof m.sentAt === 'number') at = m.sentAt;
        }
      } catch (_) {
        /* not chat JSON: shown raw */
      }
    }
    show(from === name ? 'mine' : 'theirs', from, text, at);
  }

  function subscribe() {
    if (subscription) {
      subscription.unsubscribe();
      subscription = null;
    }
    if (!client.connected) return;
    subscription = client.subscribe('/sub/chat/' + room, onMessage);
  }

  function join(r) {
    if (!ROOM_RE.test(r)) return;
    room = r;
    knownRooms.add(r);
    const u = new URL(location.href);
    u.searchParams.set('room', r);
    history.replaceState(null, '', u);
    $('room').value = r;
    $('room-title').textContent = '#' + r;
    $('sub-dest').textContent = '/sub/chat/' + r;
    $('pub-dest').textContent = '/pub/chat/' + r;
    $('messages').textContent = '';
    renderRooms();
    subscribe();
  }

  const transport = useSockJS
    ? { webSocketFactory: () => new window.SockJS(location.origin + endpoint) }
    : { brokerURL: wsUrl };
  const client = new StompJs.Client({
    ...transport,
    reconnectDelay: FIRST_DELAY,
    maxReconnectDelay: MAX_DELAY,
    reconnectTimeMode: StompJs.ReconnectionTimeMode.EXPONENTIAL,
    heartbeatIncoming: 10000,
    heartbeatOutgoing: 10000,
    connectHeaders: {},
    beforeConnect: () => {
      // The name is the session's user (dashboard, user destinations); a relay never
      // passes it upstream.
      client.connectHeaders = { login: name };
      attempt += 1;
      if (countdown) clearInterval(countdown);
      setState('connecting', attempt > 1 ? 'connecting (attempt ' + attempt + ')…' : 'connecting…');
    },
    onConnect: (frame) => {
      const reconnected = attempt > 1;
      attempt = 0;
      nextDelay = FIRST_DELAY;
      setState('connected', 'connected');
      $('foot').textContent =
        'connected to ' + wsUrl + ' · ' + (frame.headers.server || 'STOMP ' + frame.headers.version);
      subscribe();
      if (reconnected) show('note', '', 'reconnected', Date.now());
    },
    onStompError: (frame) => {
      show('note', '', 'server error: ' + (frame.headers.message || 'unknown'), Date.now());
    },
    onWebSocketClose: () => {
      subscription = null;
      if (!client.active) {
        setState('disconnected', 'disconnected');
        return;
      }
      // stompjs schedules the next attempt after this callback with the current delay,
      // then doubles it (capped): mirror that to show an honest countdown.
      const delay = nextDelay;
      nextDelay = Math.min(nextDelay * 2, MAX_DELAY);
      const due = Date.now() + delay;
      const tick = () => {
        const left = Math.max(0, due - Date.now());
        setState('reconnecting', 'reconnecting in ' + (left / 1000).toFixed(1) + ' s');
      };
      tick();
      if (countdown) clearInterval(countdown);
      countdown = setInterval(tick, 100);
    },
  });

  $('room-form').addEventListener('submit', (e) => {
    e.preventDefault();
    join($('room').value.trim());
  });
  $('name').value = name;
  $('name').addEventListener('change', () => {
    const v = $('name').value.trim();
    if (v) {
      name = v;
      localStorage.setItem('stomp-relay.name', v);
    }
  });
  $('send-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $('text');
    const text = input.value;
    if (!text.trim() || !client.connected) return;
    client.publish({
      destination: '/pub/chat/' + room,
      body: JSON.stringify({ from: name, text: text, sentAt: Date.now() }),
      headers: { 'content-type': 'application/json;charset=UTF-8' },
    });
    input.value = '';
    input.focus();
  });

  join(room);
  client.activate();
})();
