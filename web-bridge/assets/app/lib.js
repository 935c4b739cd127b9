// Shared helpers: the session (who is logged in and what they may do), the one fetch helper,
// the error toast, the core-state banner, DOM building and formatting.
//
// Everything put into the DOM goes through textContent (h() never uses innerHTML).

// ---------------------------------------------------------------------------------------------
// Session

/** Who is logged in: `{name, role, permissions: Set}` or null. */
export const session = { me: null };

/** Whether the logged-in user may use `action` (core's role table name, e.g. `exec.run`). */
export function can(action) {
  return !!(session.me && session.me.permissions.has(action));
}

/** Whether the user is an admin (narrowed rows `✓*` apply to everyone else). */
export function isAdmin() {
  return !!(session.me && session.me.role === 'Admin');
}

/** Stores `/api/v1/me` or the login answer. */
export function setMe(name, role, permissions) {
  session.me = { name, role, permissions: new Set(permissions || []) };
}

// Set by app.js: what to do when the session expired (go to the login page).
const hooks = { unauthenticated: () => {} };
export function onUnauthenticated(fn) {
  hooks.unauthenticated = fn;
}
export function unauthenticated() {
  hooks.unauthenticated();
}

// ---------------------------------------------------------------------------------------------
// Errors: one toast, `#error`

let errorTimer = null;

/** Shows `message` in `#error` (its text is the message alone). */
export function showError(message, code) {
  const el = document.getElementById('error');
  if (!el) return;
  el.textContent = message;
  if (code) el.dataset.code = code;
  else delete el.dataset.code;
  el.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(clearError, 15000);
}

export function clearError() {
  const el = document.getElementById('error');
  if (!el) return;
  clearTimeout(errorTimer);
  el.hidden = true;
  el.textContent = '';
  delete el.dataset.code;
}

// ---------------------------------------------------------------------------------------------
// Connection banner, `#core-state`

const link = { core: 'connected', socket: true, healthTimer: null };

/** The bridge's link to core: `connected` or `reconnecting`. */
export function setCoreState(state) {
  link.core = state === 'reconnecting' ? 'reconnecting' : 'connected';
  renderBanner();
  // While core is away, ask /health now and then so the banner also goes away when no live
  // message says so (the state may come from a 503 answer).
  if (link.core === 'reconnecting' && !link.healthTimer) {
    link.healthTimer = setInterval(checkHealth, 3000);
  } else if (link.core === 'connected' && link.healthTimer) {
    clearInterval(link.healthTimer);
    link.healthTimer = null;
  }
}

/** Whether the live WebSocket to the bridge is up. */
export function setSocketState(up) {
  link.socket = up;
  renderBanner();
}

export async function checkHealth() {
  try {
    const res = await fetch('/health', { credentials: 'same-origin', cache: 'no-store' });
    const body = await res.json();
    if (body && body.core) setCoreState(body.core);
  } catch (_) {
    // The bridge itself is away; the live socket shows that.
  }
}

function renderBanner() {
  const el = document.getElementById('core-state');
  if (!el) return;
  if (link.core === 'reconnecting') {
    el.textContent = 'Core unreachable \u2014 reconnecting\u2026';
    el.hidden = false;
  } else if (!link.socket) {
    el.textContent = 'Connection to the server lost \u2014 reconnecting\u2026';
    el.hidden = false;
  } else {
    el.hidden = true;
    el.textContent = '';
  }
}

// ---------------------------------------------------------------------------------------------
// The fetch helper

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * Calls the JSON API. `body` (if any) is sent as JSON. Answers the parsed JSON (null for 204).
 * Errors are shown in `#error` (unless `opts.quiet`) and thrown as ApiError; a 401 also goes to
 * the login page (unless `opts.noRedirect`), a 503 `core_unreachable` shows the banner.
 */
export async function api(method, path, body, opts = {}) {
  const init = {
    method,
    credentials: 'same-origin',
    cache: 'no-store',
    headers: { Accept: 'application/json' },
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    const err = new ApiError(0, 'network', 'The server cannot be reached (' + (e && e.message ? e.message : 'network error') + ')');
    if (!opts.quiet) showError(err.message, err.code);
    throw err;
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (_) {
      data = null;
    }
  }
  if (!res.ok) {
    const e = data && data.error ? data.error : null;
    const code = e && e.code ? e.code : 'http_' + res.status;
    const message = e && e.message ? e.message : (res.status + ' ' + (res.statusText || 'error') + (text && !data ? ': ' + text.slice(0, 200) : ''));
    const err = new ApiError(res.status, code, message);
    if (res.status === 503 && code === 'core_unreachable') setCoreState('reconnecting');
    if (res.status === 401 && !opts.noRedirect) {
      unauthenticated();
      throw err;
    }
    if (!opts.quiet) showError(message, code);
    throw err;
  }
  return data;
}

/** Builds `path?k=v&...` leaving out null, undefined and '' values. */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === null || v === undefined || v === '' || v === false) continue;
    q.set(k, String(v));
  }
  const s = q.toString();
  return s ? path + '?' + s : path;
}

/** `ws://` or `wss://` + this page's host + path. */
export function wsUrl(path) {
  return (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + path;
}

// ---------------------------------------------------------------------------------------------
// DOM

/**
 * Creates an element. `attrs`: `class`, `text`, `dataset` {k: v}, `on` {event: fn}, `hidden`,
 * boolean properties (`disabled`, `checked`, `selected`), anything else as an attribute.
 * Children: nodes, strings (text nodes), null/false (skipped), arrays.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k === 'hidden' || k === 'disabled' || k === 'checked' || k === 'selected' || k === 'required' || k === 'multiple') el[k] = !!v;
      else if (k === 'value') el.value = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A labelled form field: `<label>text <input ...></label>` wrapper. */
export function field(labelText, control, extraClass) {
  return h('label', { class: 'field' + (extraClass ? ' ' + extraClass : '') }, h('span', { class: 'field-label', text: labelText }), control);
}

/** A definition list of [term, value] pairs (values: strings or nodes). */
export function facts(pairs) {
  const dl = h('dl', { class: 'facts' });
  for (const [k, v] of pairs) {
    if (v === undefined) continue;
    dl.appendChild(h('dt', { text: k }));
    dl.appendChild(h('dd', null, v === null || v === '' ? h('span', { class: 'muted', text: '\u2014' }) : v));
  }
  return dl;
}

/** A status badge: `<span class="badge s-online">Online</span>`. */
export function badge(text, kind) {
  return h('span', { class: 'badge ' + (kind || 's-' + String(text).toLowerCase()), text: String(text) });
}

/** A small section card with a title. */
export function card(title, ...children) {
  return h('section', { class: 'card' }, title ? h('h2', { class: 'card-title', text: title }) : null, ...children);
}

/** A button that asks again inline before doing something destructive. */
export function confirmButton({ label, question, confirmLabel, cls, id, onConfirm }) {
  const wrap = h('span', { class: 'confirm-wrap' });
  const btn = h('button', { type: 'button', class: 'btn danger ' + (cls || ''), id, text: label });
  const ask = h('span', { class: 'confirm-ask', hidden: true },
    h('span', { class: 'confirm-question', text: question }),
    h('button', { type: 'button', class: 'btn danger confirm-yes', text: confirmLabel || label }),
    h('button', { type: 'button', class: 'btn confirm-no', text: 'Cancel' }));
  btn.addEventListener('click', () => {
    btn.hidden = true;
    ask.hidden = false;
    ask.querySelector('.confirm-yes').focus();
  });
  ask.querySelector('.confirm-no').addEventListener('click', () => {
    ask.hidden = true;
    btn.hidden = false;
  });
  const yes = ask.querySelector('.confirm-yes');
  yes.addEventListener('click', async () => {
    yes.disabled = true;
    try {
      await onConfirm();
    } catch (_) {
      // shown by api()
    } finally {
      yes.disabled = false;
      ask.hidden = true;
      btn.hidden = false;
    }
  });
  wrap.append(btn, ask);
  return wrap;
}

// ---------------------------------------------------------------------------------------------
// Formatting

const pad = (n) => String(n).padStart(2, '0');

/** Local time `YYYY-MM-DD HH:MM:SS`. */
export function fmtDate(ms) {
  if (ms === null || ms === undefined) return '';
  const d = new Date(ms);
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
}

/** "3 min ago", "in 2 h", "just now". */
export function fmtRel(ms, now = Date.now()) {
  if (ms === null || ms === undefined) return '';
  const diff = now - ms;
  const a = Math.abs(diff);
  let s;
  if (a < 5000) return 'just now';
  if (a < 60000) s = Math.round(a / 1000) + ' s';
  else if (a < 3600000) s = Math.round(a / 60000) + ' min';
  else if (a < 86400000) s = Math.round(a / 3600000) + ' h';
  else if (a < 86400000 * 60) s = Math.round(a / 86400000) + ' d';
  else if (a < 86400000 * 730) s = Math.round(a / (86400000 * 30)) + ' mo';
  else s = Math.round(a / (86400000 * 365)) + ' y';
  return diff >= 0 ? s + ' ago' : 'in ' + s;
}

/** Short local time: `14:03:05` today, `Nov 28 14:03` this year, else `2025-11-28`. */
export function fmtShort(ms) {
  const d = new Date(ms);
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  const mon = d.toLocaleString('en-US', { month: 'short' });
  if (d.getFullYear() === now.getFullYear()) return mon + ' ' + d.getDate() + ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes());
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate());
}

/**
 * A `<time>`: local time and relative time ("2026-11-30 14:03:05 (3 min ago)"); with
 * `{relOnly: true}` (dense tables) a short local time ("14:03:05 (3 min ago)"), the full one
 * in the tooltip. Relative parts are refreshed every 15 s.
 */
export function timeEl(ms, opts = {}) {
  if (ms === null || ms === undefined) return h('span', { class: 'muted', text: opts.none || '\u2014' });
  const t = h('time', { datetime: new Date(ms).toISOString(), title: fmtDate(ms) + ' (' + Intl.DateTimeFormat().resolvedOptions().timeZone + ')' });
  t.appendChild(document.createTextNode((opts.relOnly ? fmtShort(ms) : fmtDate(ms)) + ' '));
  t.appendChild(h('span', { class: 'rel muted', dataset: { ms: String(ms) }, text: '(' + fmtRel(ms) + ')' }));
  return t;
}

setInterval(() => {
  const now = Date.now();
  for (const el of document.querySelectorAll('span.rel[data-ms]')) {
    el.textContent = '(' + fmtRel(Number(el.dataset.ms), now) + ')';
  }
}, 15000);

/** Human byte size, 1024-based: "1.5 GiB". */
export function fmtBytes(n) {
  if (n === null || n === undefined || isNaN(n)) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = Number(n);
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return (i === 0 ? String(Math.round(v)) : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)) + ' ' + units[i];
}

export function fmtRate(n) {
  if (n === null || n === undefined) return '';
  return fmtBytes(n) + '/s';
}

/** "2 d 3 h", "5 min 10 s". */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || isNaN(ms)) return '';
  let s = Math.max(0, Math.round(ms / 1000));
  if (ms < 1000 && ms > 0) return ms + ' ms';
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hr = Math.floor(s / 3600); s -= hr * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return d + ' d' + (hr ? ' ' + hr + ' h' : '');
  if (hr) return hr + ' h' + (m ? ' ' + m + ' min' : '');
  if (m) return m + ' min' + (s ? ' ' + s + ' s' : '');
  return s + ' s';
}

/** 100000 → "100,000". */
export function fmtInt(n) {
  if (n === null || n === undefined) return '';
  return Number(n).toLocaleString('en-US');
}

export function fmtPct(part, whole) {
  if (!whole) return '';
  return (100 * part / whole).toFixed(1) + ' %';
}

/** An argv as a shell would read it (a `sh -c CMD` shows as CMD). */
export function fmtCommand(argv) {
  if (!Array.isArray(argv)) return String(argv || '');
  if (argv.length === 3 && (argv[0] === 'sh' || argv[0] === '/bin/sh') && argv[1] === '-c') return argv[2];
  return argv.map((a) => (/^[A-Za-z0-9_./:=@%+,-]+$/.test(a) ? a : "'" + a.replace(/'/g, "'\\''") + "'")).join(' ');
}

/** A group (`GET /api/v1/groups` lists them depth first) as a `<select>` option's text:
 * indented by its depth, so the list reads as the tree. */
export function groupOptionText(g) {
  return '\u00A0\u00A0'.repeat(Math.max(0, g.depth - 1)) + g.name;
}

/** A short id for display: first 8 characters. */
export function shortId(id) {
  return id ? String(id).slice(0, 8) : '';
}

/** Parses "k=v,k=v" into {k: v}; throws an Error naming the bad part. */
export function parseLabels(text) {
  const out = {};
  for (const part of String(text || '').split(',')) {
    const p = part.trim();
    if (!p) continue;
    const i = p.indexOf('=');
    if (i <= 0) throw new Error('label "' + p + '" is not KEY=VALUE');
    out[p.slice(0, i).trim()] = p.slice(i + 1).trim();
  }
  return out;
}

/** Calls fn at most once per `ms` after the last call. */
export function debounce(fn, ms) {
  let t = null;
  const d = (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
  d.cancel = () => clearTimeout(t);
  return d;
}

const loaded = new Map();

/**
 * Loads classic scripts and stylesheets (the vendored xterm.js, asciinema-player and their CSS)
 * once, in order, when a page first needs them: the nodes page and the dashboard should not
 * wait for 700 KB of JavaScript they never run, nor the app's first run for stylesheets only a
 * terminal uses (a pending stylesheet holds scripts back). A `.css` path is a stylesheet.
 * Answers a promise that rejects naming the file that failed.
 */
export function loadAssets(srcs) {
  return srcs.reduce((before, src) => before.then(() => {
    if (!loaded.has(src)) {
      loaded.set(src, new Promise((resolve, reject) => {
        let el;
        if (src.endsWith('.css')) {
          el = document.createElement('link');
          el.rel = 'stylesheet';
          el.href = src;
        } else {
          el = document.createElement('script');
          el.src = src;
        }
        el.onload = () => resolve();
        el.onerror = () => {
          loaded.delete(src);
          el.remove();
          reject(new Error('could not load ' + src));
        };
        document.head.append(el);
      }));
    }
    return loaded.get(src);
  }), Promise.resolve());
}

/** Runs `fn` now and then every `ms` while the tab is visible; answers a stop function. */
export function poll(fn, ms) {
  let timer = null;
  let stopped = false;
  let running = false;
  const tick = async () => {
    timer = null;
    if (stopped) return;
    if (!document.hidden) {
      running = true;
      try {
        await fn();
      } catch (_) {
        // shown by api()
      } finally {
        running = false;
      }
    }
    if (!stopped && !timer) timer = setTimeout(tick, ms);
  };
  const onVis = () => {
    if (!document.hidden && !stopped && !running) {
      clearTimeout(timer);
      tick();
    }
  };
  document.addEventListener('visibilitychange', onVis);
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVis);
  };
}

/** Makes `parent`'s children exactly `children`, in order, moving only what must move (keeps
 * focus and form state in rows that stay). */
export function reconcile(parent, children) {
  let cursor = parent.firstChild;
  for (const el of children) {
    if (el === cursor) cursor = cursor.nextSibling;
    else parent.insertBefore(el, cursor);
  }
  while (cursor) {
    const next = cursor.nextSibling;
    cursor.remove();
    cursor = next;
  }
}

/**
 * uPlot's `points.show` for charts with gaps: a point is drawn where a value stands alone (a
 * line needs a neighbour on one side), and every point on a short series.
 */
export function lonePoints(u, si) {
  const ys = u.data[si];
  if (ys.length < 120) return true;
  for (let i = 0; i < ys.length; i++) {
    if (ys[i] != null && ys[i - 1] == null && ys[i + 1] == null) return true;
  }
  return false;
}
