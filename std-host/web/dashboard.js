// stomp-relay dashboard: polls GET /api/stats once a second and renders it. The admin
// token (when the server has one) comes from ?token= once, is kept in sessionStorage and
// sent as `Authorization: Bearer`, and is removed from the address bar.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 1000;

  const params = new URLSearchParams(location.search);
  if (params.has('token')) {
    sessionStorage.setItem('stomp-relay.token', params.get('token'));
    params.delete('token');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + (rest ? '?' + rest : ''));
  }
  const token = sessionStorage.getItem('stomp-relay.token');

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function row(cells) {
    const tr = document.createElement('tr');
    for (const c of cells) {
      const td = document.createElement('td');
      if (c instanceof Node) td.appendChild(c);
      else td.textContent = c === null || c === undefined ? '—' : String(c);
      tr.appendChild(td);
    }
    return tr;
  }

  function duration(s) {
    if (s < 60) return s + ' s';
    if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  function clock(ms) {
    const d = new Date(ms);
    return d.toTimeString().slice(0, 8);
  }

  function setStatus(state, text) {
    $('status').dataset.state = state;
    $('status-text').textContent = text;
  }

  function fill(tbody, rows, empty, span) {
    tbody.textContent = '';
    if (rows.length === 0) {
      const tr = document.createElement('tr');
      const td = el('td', empty, 'empty');
      td.colSpan = span;
      tr.appendChild(td);
      tbody.appendChild(tr);
      return;
    }
    for (const r of rows) tbody.appendChild(r);
  }

  // A small line chart drawn by hand on a canvas: the last two minutes, one point a second.
  function drawChart(samples) {
    const canvas = $('chart');
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const g = canvas.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const left = 44;
    const bottom = h - 20;
    const top = 10;
    const right = w - 8;
    const span = 120;
    let peak = 1;
    for (const s of samples) peak = Math.max(peak, s.published, s.delivered);
    // Four grid steps of 1, 2 or 5 times a power of ten, so the labels are round.
    const raw = peak / 4;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((v) => v >= raw);
    const max = Math.max(4, step * 4);

    g.font = '11px system-ui, sans-serif';
    g.fillStyle = '#6b7280';
    g.strokeStyle = '#e5e7eb';
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = bottom - ((bottom - top) * i) / 4;
      g.beginPath();
      g.moveTo(left, y);
      g.lineTo(right, y);
      g.stroke();
      g.fillText(String(Math.round((max * i) / 4)), 4, y + 4);
    }
    g.fillText('-2 min', left, h - 4);
    g.fillText('now', right - 22, h - 4);

    const x = (i) => left + ((right - left) * (span - (samples.length - 1 - i) - 1)) / (span - 1);
    const y = (v) => bottom - ((bottom - top) * v) / max;
    for (const [key, color] of [
      ['delivered', '#16a34a'],
      ['published', '#2563eb'],
    ]) {
      g.strokeStyle = color;
      g.lineWidth = 2;
      g.beginPath();
      samples.forEach((s, i) => (i === 0 ? g.moveTo(x(i), y(s[key])) : g.lineTo(x(i), y(s[key]))));
      g.stroke();
    }
  }

  function render(s) {
    const b = s.broker;
    $('sessions-current').textContent = s.sessions.current;
    $('sessions-total').textContent = s.sessions.total + ' since start';
    $('subscriptions-total').textContent = s.subscriptions.total;
    $('destinations-count').textContent = s.subscriptions.by_destination.length + ' destinations';
    const last = s.messages.per_second[s.messages.per_second.length - 1] || { published: 0, delivered: 0 };
    $('rate-now').textContent = last.published + ' / ' + last.delivered;
    $('rate-totals').textContent =
      'published / delivered · totals ' + s.messages.published_total + ' / ' + s.messages.delivered_total;
    $('broker-mode').textContent = b.mode;
    $('broker-detail').textContent =
      (b.available ? 'available' : 'NOT available') +
      (b.mode === 'relay'
        ? ' · ' + b.relay_mode + ' · ' + b.relay_connections + ' upstream connections · dialect ' + b.dialect
        : ' · embedded');
    $('broker-mode').dataset.available = String(b.available);

    const addrRows = b.addresses.map((a) => {
      // Without per-address reports only the instance's overall availability is known.
      const overall = b.available
        ? b.addresses.length > 1
          ? 'available (via one of these)'
          : 'broker available'
        : 'broker not available';
      const state = a.connected === true ? 'connected' : a.connected === false ? 'not connected' : overall;
      const cls = a.connected === true || (a.connected === null && b.available) ? 'ok' : 'bad';
      return row([el('code', a.url), el('span', state, 'pill ' + cls), a.last_error]);
    });
    fill(
      $('addresses').tBodies[0],
      addrRows,
      b.mode === 'simple' ? 'embedded simple broker: no upstream (available)' : 'no addresses',
      3
    );

    const sessionRows = s.sessions.listed.map((x) => {
      const subs = document.createElement('div');
      for (const sub of x.subscriptions) subs.appendChild(el('code', sub.destination, 'sub'));
      if (x.subscriptions.length === 0) subs.textContent = '—';
      const tr = row([x.id, x.user, x.transport, duration(x.connected_seconds), subs, x.upstream || (b.mode === 'relay' && b.relay_mode === 'per-session' ? 'own connection' : b.mode === 'relay' ? 'shared connection' : 'none (embedded)')]);
      tr.dataset.sessionId = x.id;
      return tr;
    });
    fill($('sessions').tBodies[0], sessionRows, 'no client sessions', 5);
    $('sessions-note').textContent = s.sessions.truncated ? 'only the first ' + s.sessions.listed.length + ' sessions are listed' : '';

    const top = s.subscriptions.by_destination.reduce((m, d) => Math.max(m, d.subscribers), 1);
    const destRows = s.subscriptions.by_destination.map((d) => {
      const bar = el('div', null, 'bar-fill');
      bar.style.width = Math.max(4, (100 * d.subscribers) / top) + '%';
      const wrap = el('div', null, 'bar-track');
      wrap.appendChild(bar);
      const tr = row([el('code', d.destination), d.subscribers, wrap]);
      tr.dataset.destination = d.destination;
      return tr;
    });
    fill($('destinations').tBodies[0], destRows, 'no subscriptions', 3);

    const ol = $('errors');
    ol.textContent = '';
    if (s.errors.length === 0) ol.appendChild(el('li', 'none', 'empty'));
    for (const e of s.errors.slice(0, 15)) {
      const li = el('li');
      li.appendChild(el('time', clock(e.at_ms)));
      li.appendChild(el('span', e.message));
      ol.appendChild(li);
    }
    const closed = Object.entries(s.sessions.closed_abnormally).filter(([, n]) => n > 0);
    $('closed-counts').textContent = closed.length
      ? 'closed abnormally since start: ' + closed.map(([c, n]) => c + ' ' + n).join(', ')
      : 'no abnormal closes since start';

    drawChart(s.messages.per_second);
    $('foot').textContent = 'stomp-relay ' + s.server.version + ' · up ' + duration(s.server.uptime_seconds);
  }

  async function poll() {
    try {
      const headers = token ? { Authorization: 'Bearer ' + token } : {};
      const r = await fetch('/api/stats', { headers, cache: 'no-store' });
      if (r.status === 401) {
        setStatus('disconnected', 'admin token required');
        location.href = '/dashboard';
        return;
      }
      if (!r.ok) throw new Error('HTTP ' + r.status);
      render(await r.json());
      setStatus('connected', 'live · updated ' + clock(Date.now()));
    } catch (e) {
      setStatus('reconnecting', 'stats unavailable: ' + e.message + ' (retrying)');
    }
    setTimeout(poll, POLL_MS);
  }

  poll();
})();
