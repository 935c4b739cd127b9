// What the command page and the command detail page share: one node's block of output, status
// texts and the execution summary.

import { h, fill, badge, fmtInt, fmtDuration, fmtBytes } from '../lib.js';

// Terminal escape sequences (colours, cursor moves, titles) would show as garbage in a <pre>:
// CSI `ESC [ params final`, OSC `ESC ] ... BEL|ESC \\`, and two-character escapes.
const ANSI = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\^_])/g;
// The start of one of them, cut off at the end of a chunk.
const ANSI_CUT = /^\x1b(?:\[[0-?]*[ -/]*|\][^\x07]*)?$/;

/**
 * Removes terminal escape sequences from `text`. Returns `[shown, carry]`: `carry` is an
 * escape sequence cut off at the end, to be put in front of the same stream's next chunk.
 */
export function stripAnsi(text) {
  let shown = text.replace(ANSI, '');
  let carry = '';
  const from = Math.max(0, shown.length - 256);
  for (let i = shown.indexOf('\x1b', from); i >= 0; i = shown.indexOf('\x1b', i + 1)) {
    if (ANSI_CUT.test(shown.slice(i))) {
      carry = shown.slice(i);
      shown = shown.slice(0, i);
      break;
    }
  }
  return [shown.replace(/\x1b/g, ''), carry];
}

/** Per node, at most this much output text stays in the DOM. */
export const MAX_NODE_TEXT = 256 * 1024;

/** "running", "Ok", "Failed (exit code 2)", "Failed (signal 9)", "Timeout", "Error: ...". */
export function execStatusText(r) {
  switch (r.status) {
    case 'Pending': return 'pending';
    case 'Running': return 'running';
    case 'Ok': return 'Ok';
    case 'Failed':
      if (r.signal != null) return 'Failed (signal ' + r.signal + ')';
      if (r.exit_code != null) return 'Failed (exit code ' + r.exit_code + ')';
      return 'Failed';
    case 'Timeout': return 'Timeout' + (r.error ? ': ' + r.error : '');
    case 'Offline': return 'Offline' + (r.error ? ': ' + r.error : '');
    case 'Cancelled': return 'Cancelled' + (r.error ? ': ' + r.error : '');
    case 'Error': return 'Error' + (r.error ? ': ' + r.error : '');
    case 'Interrupted': return 'Interrupted' + (r.error ? ': ' + r.error : '');
    default: return String(r.status || '');
  }
}

/** One node's block: `div.exec-node[data-node-id]` with hostname, `span.exec-status`, `pre.output`. */
export class NodeBlock {
  constructor(nodeId, hostname) {
    this.nodeId = nodeId;
    this.textLen = 0;
    this.truncated = false;
    this.lastStream = null;
    this.lastText = null;
    this.cut = { stdout: '', stderr: '' };
    this.status = h('span', { class: 'exec-status st-running', text: 'running' });
    this.meta = h('span', { class: 'exec-meta muted small' });
    this.pre = h('pre', { class: 'output', tabindex: '0', 'aria-label': 'Output of ' + (hostname || nodeId) });
    this.host = h('a', { class: 'exec-host', href: '#/nodes/' + encodeURIComponent(nodeId), text: hostname || nodeId });
    this.el = h('div', { class: 'exec-node', dataset: { nodeId } },
      h('div', { class: 'exec-node-head' }, this.host, this.status, this.meta),
      this.pre);
  }

  setHostname(name) {
    if (name) this.host.textContent = name;
  }

  /** Appends text of `stream` (`stdout` or `stderr`); stderr shows in its own colour. */
  append(stream, text) {
    if (!text || this.truncated) return;
    const key = stream === 'stderr' ? 'stderr' : 'stdout';
    [text, this.cut[key]] = stripAnsi(this.cut[key] + text);
    if (!text) return;
    const stick = this.pre.scrollHeight - this.pre.scrollTop - this.pre.clientHeight < 4;
    if (this.textLen + text.length > MAX_NODE_TEXT) {
      text = text.slice(0, Math.max(0, MAX_NODE_TEXT - this.textLen));
      this.truncated = true;
    }
    this.textLen += text.length;
    if (stream === this.lastStream && this.lastText) {
      this.lastText.appendData(text);
    } else {
      const node = document.createTextNode(text);
      if (stream === 'stderr') this.pre.appendChild(h('span', { class: 'stderr' }, node));
      else this.pre.appendChild(h('span', { class: 'stdout' }, node));
      this.lastStream = stream;
      this.lastText = node;
    }
    if (this.truncated) {
      this.pre.appendChild(h('span', { class: 'trunc', text: '\n[more output not shown here: see the execution\u2019s page]' }));
    }
    this.el.classList.add('has-output');
    if (stick) this.pre.scrollTop = this.pre.scrollHeight;
  }

  /** Shows a NodeExecView result. */
  done(r) {
    this.setHostname(r.hostname);
    this.status.textContent = execStatusText(r);
    this.status.className = 'exec-status st-' + String(r.status).toLowerCase();
    this.el.dataset.status = r.status;
    const bits = [];
    if (r.exit_code != null) bits.push('exit ' + r.exit_code);
    if (r.started_at_ms && r.finished_at_ms) bits.push(fmtDuration(r.finished_at_ms - r.started_at_ms));
    if (r.stdout_bytes || r.stderr_bytes) bits.push(fmtBytes(r.stdout_bytes || 0) + ' out, ' + fmtBytes(r.stderr_bytes || 0) + ' err');
    if (r.truncated) bits.push('output beyond the kept cap was not stored');
    this.meta.textContent = bits.join(' \u00B7 ');
  }
}

/** "2 ok · 1 failed · 3 running" from ExecCounts. */
export function countsText(c) {
  if (!c) return '';
  const parts = [];
  for (const k of ['ok', 'failed', 'timeout', 'offline', 'cancelled', 'error', 'interrupted', 'unfinished']) {
    if (c[k]) parts.push(fmtInt(c[k]) + ' ' + (k === 'unfinished' ? 'running' : k));
  }
  return parts.join(' \u00B7 ');
}

/** Counts as coloured chips. */
export function countsEl(c) {
  const el = h('span', { class: 'counts' });
  if (!c) return el;
  for (const k of ['ok', 'failed', 'timeout', 'offline', 'cancelled', 'error', 'interrupted', 'unfinished']) {
    if (c[k]) el.appendChild(h('span', { class: 'count-chip st-' + (k === 'unfinished' ? 'running' : k), title: k, text: fmtInt(c[k]) + ' ' + (k === 'unfinished' ? 'running' : k) }));
  }
  return el;
}

/** Empties `el` and shows a hint. */
export function emptyHint(el, text) {
  fill(el, h('p', { class: 'empty', text }));
}

/**
 * An execution's state as a badge coloured by its results: `finished` is green only when every
 * node succeeded, amber when some did not, red when none did.
 */
export function stateBadge(state, c) {
  if (String(state).toLowerCase() !== 'finished' || !c) return badge(state);
  const total = Object.values(c).reduce((a, b) => a + (b || 0), 0);
  const ok = c.ok || 0;
  if (ok === total) return badge(state);
  const kind = ok === 0 ? 's-failed' : 'r-denied';
  return h('span', { class: 'badge ' + kind, title: (total - ok) + ' of ' + total + ' did not succeed', text: ok === 0 ? 'failed' : 'partly failed' });
}
