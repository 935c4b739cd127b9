// The one `/api/v1/live` WebSocket, open while someone is logged in. Pages say what they watch
// with watch(spec, handler); a hidden tab watches nothing. The socket reconnects with backoff
// and the `#core-state` banner shows meanwhile.

import { api, wsUrl, setCoreState, setSocketState, showError, unauthenticated } from './lib.js';

const state = {
  running: false,
  ws: null,
  spec: {},
  handler: null,
  backoff: 500,
  timer: null,
};

/** Opens the socket (once logged in). */
export function startLive() {
  if (state.running) return;
  state.running = true;
  state.backoff = 500;
  connect();
}

/** Closes it (logout, expired session). */
export function stopLive() {
  state.running = false;
  clearTimeout(state.timer);
  state.timer = null;
  const ws = state.ws;
  state.ws = null;
  if (ws) ws.close();
  setSocketState(true);
}

/**
 * Replaces what the page watches: `{overview: true}`, `{nodes: {...query}}`, `{node: ID}`, or
 * `{}`. `handler(msg)` gets `overview`, `nodes`, `node` and `error` messages.
 */
export function watch(spec, handler) {
  state.spec = spec || {};
  state.handler = handler || null;
  sendWatch();
}

function sendWatch() {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  ws.send(JSON.stringify({ watch: document.hidden ? {} : state.spec }));
}

document.addEventListener('visibilitychange', sendWatch);

function connect() {
  let ws;
  try {
    ws = new WebSocket(wsUrl('/api/v1/live'));
  } catch (e) {
    scheduleReconnect();
    return;
  }
  state.ws = ws;
  ws.onopen = () => {
    if (state.ws !== ws) return;
    state.backoff = 500;
    setSocketState(true);
    sendWatch();
  };
  ws.onmessage = (ev) => {
    if (state.ws !== ws || typeof ev.data !== 'string') return;
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch (_) {
      return;
    }
    dispatch(msg);
  };
  ws.onclose = () => {
    if (state.ws !== ws) return;
    state.ws = null;
    if (!state.running) return;
    setSocketState(false);
    scheduleReconnect();
  };
}

function dispatch(msg) {
  if (msg.type === 'core') {
    setCoreState(msg.state);
    return;
  }
  if (msg.type === 'error') {
    if (msg.code === 'unauthenticated') {
      stopLive();
      unauthenticated();
      return;
    }
    // A watch refused for what it asks (no such node, not allowed) is dropped by the bridge:
    // asking again after a reconnect would only be refused again.
    if (['not_found', 'ambiguous', 'invalid_argument', 'permission_denied'].includes(msg.code)) {
      state.spec = {};
    }
    // Core going away closes the watch (and the bridge may close this socket): say so.
    if (msg.code === 'core_unreachable' || msg.code === 'shutting_down') setCoreState('reconnecting');
    showError(msg.message || msg.code, msg.code);
  }
  if (state.handler) {
    try {
      state.handler(msg);
    } catch (e) {
      console.error(e);
    }
  }
}

function scheduleReconnect() {
  clearTimeout(state.timer);
  const delay = state.backoff + Math.floor(Math.random() * 250);
  state.backoff = Math.min(state.backoff * 2, 15000);
  state.timer = setTimeout(async () => {
    state.timer = null;
    if (!state.running) return;
    // A socket that cannot open may mean an expired session (the upgrade is refused with 401,
    // which a WebSocket cannot see): ask /me first.
    try {
      await api('GET', '/api/v1/me', undefined, { quiet: true, noRedirect: true });
    } catch (e) {
      if (e.status === 401) {
        stopLive();
        unauthenticated();
        return;
      }
      if (e.status === 0) {
        scheduleReconnect();
        return;
      }
    }
    if (state.running && !state.ws) connect();
  }, delay);
}
