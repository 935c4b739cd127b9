// #/terminal/ID: a shell on a node through /api/v1/tty (binary frames whose first byte is the
// kind, an ASCII digit as in ttyd).
//
// Browser -> bridge: '0' input bytes, '1' resize {"cols","rows"}, '2' pause, '3' resume.
// Bridge -> browser: '0' output bytes, '1' connected {...}, '2' exit {code, signal, reason},
// '3' error {code, message}.
// Flow control: bytes handed to term.write() are counted until their callback runs; above
// HIGH the page sends pause, below LOW resume.

import { h, wsUrl, api, debounce, showError, unauthenticated, loadAssets } from '../lib.js';

const HIGH = 256 * 1024;
const LOW = 32 * 1024;
const INPUT_CHUNK = 32 * 1024;

// Kinds are ASCII digits, as in ttyd: '0' is 0x30.
const K_INPUT = 0x30;
const K_RESIZE = 0x31;
const K_PAUSE = 0x32;
const K_RESUME = 0x33;
const K_OUTPUT = 0x30;
const K_CONNECTED = 0x31;
const K_EXIT = 0x32;
const K_ERROR = 0x33;

export function mount(main, ctx) {
  const id = ctx.params[0];
  main.classList.add('main-full');

  const status = h('span', { id: 'tty-status', class: 'tty-status', role: 'status', 'aria-live': 'polite', text: 'connecting\u2026' });
  const copyBtn = h('button', { type: 'button', id: 'tty-copy', class: 'btn btn-small', title: 'Copy the selection (Ctrl+Shift+C)', text: 'Copy' });
  const pasteBtn = h('button', { type: 'button', id: 'tty-paste', class: 'btn btn-small', title: 'Paste (Ctrl+Shift+V)', text: 'Paste' });
  const closeBtn = h('button', { type: 'button', id: 'tty-close', class: 'btn btn-small danger', text: 'Disconnect' });
  const againBtn = h('button', { type: 'button', id: 'tty-again', class: 'btn btn-small primary', hidden: true, title: 'Open a new session on this node', text: 'New session' });
  const nodeLink = h('a', { href: '#/nodes/' + encodeURIComponent(id), class: 'tty-node', text: id });
  const sizeEl = h('span', { class: 'tty-size muted small', id: 'tty-size' });
  const el = h('div', { id: 'terminal', class: 'terminal' });
  main.append(
    h('div', { class: 'tty-bar' }, nodeLink, status, h('span', { class: 'spacer' }), sizeEl, copyBtn, pasteBtn, closeBtn, againBtn),
    h('div', { class: 'terminal-wrap' }, el));

  let gone = false;
  let stop = null;
  loadAssets(['/assets/vendor/xterm.css', '/assets/vendor/xterm.js', '/assets/vendor/addon-fit.js']).then(() => {
    if (!gone) stop = start();
  }, (e) => {
    status.textContent = 'The terminal could not load (' + e.message + ').';
    status.classList.add('bad');
  });
  return () => {
    gone = true;
    if (stop) stop();
  };

  function start() {
    const term = new Terminal({
      cursorBlink: true,
      fontFamily: 'ui-monospace, SFMono-Regular, "DejaVu Sans Mono", Menlo, Consolas, "Liberation Mono", monospace',
      fontSize: 14,
      scrollback: 10000,
      allowProposedApi: false,
      theme: { background: '#111827', foreground: '#e5e7eb', cursor: '#e5e7eb', selectionBackground: '#374151' },
    });
    window.term = term;
    const fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(el);
    try {
      fit.fit();
    } catch (_) { /* not laid out yet */ }
    sizeEl.textContent = term.cols + '\u00D7' + term.rows;

    const enc = new TextEncoder();
    const dec = new TextDecoder();
    let ws = null;
    let ended = false;
    let pending = 0;
    let paused = false;
    let hostname = null;
    let openedSize = [0, 0];

    const setStatus = (text, cls) => {
      status.textContent = text;
      status.className = 'tty-status' + (cls ? ' ' + cls : '');
    };
    // Once a session ends, the bar offers a new one in place of Disconnect.
    const markEnded = () => {
      ended = true;
      closeBtn.hidden = true;
      againBtn.hidden = false;
    };

    function sendFrame(kind, payload) {
      if (!ws || ws.readyState !== WebSocket.OPEN) return;
      const frame = new Uint8Array(1 + (payload ? payload.length : 0));
      frame[0] = kind;
      if (payload) frame.set(payload, 1);
      ws.send(frame);
    }

    function sendInput(bytes) {
      for (let i = 0; i < bytes.length; i += INPUT_CHUNK) sendFrame(K_INPUT, bytes.subarray(i, i + INPUT_CHUNK));
    }

    const sendResize = debounce(() => {
      sendFrame(K_RESIZE, enc.encode(JSON.stringify({ cols: term.cols, rows: term.rows })));
    }, 150);

    function parseJson(bytes) {
      try {
        return JSON.parse(dec.decode(bytes));
      } catch (_) {
        return {};
      }
    }

    // xterm.js 6.0.0 drops a character whose UTF-8 bytes are split across write() calls after
    // a 0x80 continuation byte (xterm.js issue #6003, fixed after 6.0.0). So the page still hands
    // xterm.js raw bytes, but keeps an incomplete sequence at a frame's end (at most 3 bytes)
    // and hands it over with the next frame's bytes: each write() ends on a character boundary.
    let carry = null;
    function completeChars(bytes) {
      let data = bytes;
      if (carry) {
        data = new Uint8Array(carry.length + bytes.length);
        data.set(carry, 0);
        data.set(bytes, carry.length);
        carry = null;
      }
      const keep = incompleteTail(data);
      if (keep) {
        carry = data.slice(data.length - keep);
        data = data.subarray(0, data.length - keep);
      }
      return data;
    }

    function onOutput(bytes) {
      const data = completeChars(bytes);
      if (data.length === 0) return;
      const n = data.length;
      pending += n;
      term.write(data, () => {
        pending -= n;
        if (paused && pending < LOW) {
          paused = false;
          sendFrame(K_RESUME);
        }
      });
      if (!paused && pending > HIGH) {
        paused = true;
        sendFrame(K_PAUSE);
      }
    }

    function connect() {
      openedSize = [term.cols, term.rows];
      const url = wsUrl('/api/v1/tty?node=' + encodeURIComponent(id) + '&cols=' + term.cols + '&rows=' + term.rows);
      ws = new WebSocket(url);
      ws.binaryType = 'arraybuffer';
      let gotFrame = false;
      setStatus('connecting\u2026');
      ws.onmessage = (ev) => {
        if (!(ev.data instanceof ArrayBuffer)) return;
        const frame = new Uint8Array(ev.data);
        if (frame.length === 0) return;
        gotFrame = true;
        const kind = frame[0];
        const payload = frame.subarray(1);
        switch (kind) {
          case K_OUTPUT:
            onOutput(payload);
            break;
          case K_CONNECTED: {
            const c = parseJson(payload);
            hostname = c.hostname || id;
            nodeLink.textContent = hostname;
            document.title = hostname + ' \u2014 Terminal \u2014 Tether';
            setStatus('connected to ' + hostname + (c.recorded ? ' (recorded)' : ''), 'ok');
            // The window may have changed size while connecting.
            if (term.cols !== openedSize[0] || term.rows !== openedSize[1]) sendResize();
            if (c.session_id) status.title = 'Session ' + c.session_id;
            term.focus();
            break;
          }
          case K_EXIT: {
            if (carry) {
              term.write(carry); // an incomplete character at the very end
              carry = null;
            }
            const x = parseJson(payload);
            markEnded();
            if (x.code !== null && x.code !== undefined) setStatus('exited with code ' + x.code, x.code === 0 ? 'done' : 'bad');
            else if (x.signal !== null && x.signal !== undefined) setStatus('killed by signal ' + x.signal, 'bad');
            else setStatus(x.reason || 'session ended', 'done');
            break;
          }
          case K_ERROR: {
            const e = parseJson(payload);
            markEnded();
            if (e.code === 'unauthenticated') {
              unauthenticated();
              return;
            }
            setStatus(e.message || e.code || 'error', 'bad');
            break;
          }
          default:
            break;
        }
      };
      ws.onclose = async (ev) => {
        if (ended) return;
        markEnded();
        if (!gotFrame) {
          setStatus('could not connect' + (ev.code && ev.code !== 1006 ? ' (' + ev.code + (ev.reason ? ': ' + ev.reason : '') + ')' : ''), 'bad');
          // A refused upgrade may be an expired session: /me answers 401 then (and goes to login).
          try {
            await api('GET', '/api/v1/me', undefined, { quiet: true });
          } catch (_) { /* handled */ }
        } else {
          setStatus('disconnected' + (ev.reason ? ': ' + ev.reason : ''), 'bad');
        }
      };
    }

    term.onData((s) => sendInput(enc.encode(s)));
    term.onBinary((s) => {
      const b = new Uint8Array(s.length);
      for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i) & 0xff;
      sendInput(b);
    });
    term.onResize(({ cols, rows }) => {
      sizeEl.textContent = cols + '\u00D7' + rows;
      sendResize();
    });

    // Copy and paste: Ctrl+Shift+C copies the selection; Ctrl+Shift+V lets the browser paste
    // (xterm.js handles the paste event itself, so large pastes arrive whole).
    async function copySelection() {
      const text = term.getSelection();
      if (!text) return;
      try {
        await navigator.clipboard.writeText(text);
      } catch (_) {
        const ta = h('textarea', { class: 'offscreen' });
        ta.value = text;
        document.body.appendChild(ta);
        ta.select();
        try {
          document.execCommand('copy');
        } catch (e) {
          showError('Copying needs clipboard access (https or localhost).', 'clipboard');
        }
        ta.remove();
        term.focus();
      }
    }
    term.attachCustomKeyEventHandler((e) => {
      if (e.type === 'keydown' && e.ctrlKey && e.shiftKey && !e.altKey && !e.metaKey) {
        if (e.code === 'KeyC') {
          e.preventDefault();
          copySelection();
          return false;
        }
        if (e.code === 'KeyV') {
          // Let the browser's own paste event reach xterm.js.
          return false;
        }
      }
      return true;
    });
    copyBtn.addEventListener('click', () => {
      copySelection();
      term.focus();
    });
    pasteBtn.addEventListener('click', async () => {
      try {
        const text = await navigator.clipboard.readText();
        if (text) term.paste(text);
      } catch (_) {
        showError('Reading the clipboard needs permission; use Ctrl+Shift+V instead.', 'clipboard');
      }
      term.focus();
    });
    closeBtn.addEventListener('click', () => {
      if (ws && ws.readyState <= 1) {
        ws.close();
        setStatus('disconnected', 'done');
        markEnded();
      }
    });
    againBtn.addEventListener('click', () => {
      if (!ended) return;
      ended = false;
      paused = false;
      carry = null;
      againBtn.hidden = true;
      closeBtn.hidden = false;
      term.write('\r\n');
      connect();
      term.focus();
    });

    // Keep the terminal filling its area.
    const refit = debounce(() => {
      try {
        fit.fit();
      } catch (_) { /* hidden */ }
    }, 50);
    const ro = new ResizeObserver(refit);
    ro.observe(el);

    // Closing the tab ends the session: the socket closes.
    const onPageHide = () => {
      if (ws && ws.readyState <= 1) ws.close();
    };
    window.addEventListener('pagehide', onPageHide);

    connect();
    term.focus();

    return () => {
      window.removeEventListener('pagehide', onPageHide);
      ro.disconnect();
      refit.cancel();
      sendResize.cancel();
      ended = true;
      if (ws && ws.readyState <= 1) ws.close();
      term.dispose();
    };
  }
}

/** How many bytes at the end of `b` start a UTF-8 sequence that is not complete (0 to 3). */
export function incompleteTail(b) {
  const len = b.length;
  // Walk back over at most 3 continuation bytes (10xxxxxx) to the lead byte.
  let i = len - 1;
  let cont = 0;
  while (i >= 0 && cont < 3 && (b[i] & 0xc0) === 0x80) {
    i--;
    cont++;
  }
  if (i < 0) return 0;
  const lead = b[i];
  let need;
  if ((lead & 0xe0) === 0xc0) need = 2;
  else if ((lead & 0xf0) === 0xe0) need = 3;
  else if ((lead & 0xf8) === 0xf0) need = 4;
  else return 0; // ASCII or a stray byte: nothing to wait for
  const have = len - i;
  return have < need ? have : 0;
}
