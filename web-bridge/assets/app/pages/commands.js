// #/commands: run a command on nodes (streamed through /api/v1/exec) and the history.

import {
  api, h, fill, card, field, timeEl, fmtInt, fmtDuration, fmtCommand, withQuery, wsUrl,
  can, parseLabels, showError, unauthenticated, shortId, groupOptionText,
} from '../lib.js';
import { NodeBlock, countsEl, countsText, stateBadge } from './exec-common.js';

/** At most this many node blocks in the DOM for one run; the rest are counted. */
const MAX_BLOCKS = 1000;

export function mount(main, ctx) {
  let dead = false;
  let run = null; // the current run: {ws, blocks: Map, ...}

  const history = h('div', { id: 'executions-wrap' }, h('p', { class: 'muted', text: 'Loading\u2026' }));
  const output = h('section', { id: 'exec-output', class: 'card', hidden: true });

  main.append(h('div', { class: 'page-head' }, h('h1', { text: 'Commands' })));

  if (can('exec.run')) {
    const command = h('input', { id: 'command', name: 'command', class: 'mono', placeholder: 'uptime -p', autocomplete: 'off', spellcheck: 'false', required: true });
    const targets = h('input', { id: 'targets', name: 'targets', placeholder: 'web-1, 0b6f\u2026 (ids or hostnames)', autocomplete: 'off', spellcheck: 'false' });
    const labels = h('input', { id: 'labels', name: 'labels', placeholder: 'role=web,dc=ams', autocomplete: 'off', spellcheck: 'false' });
    const group = h('select', { id: 'exec-group', name: 'group' }, h('option', { value: '', text: 'No group' }));
    api('GET', '/api/v1/groups').then((list) => {
      for (const g of Array.isArray(list) ? list : []) {
        group.append(h('option', { value: g.name, text: groupOptionText(g) + ' (' + g.nodes_total + ')' }));
      }
    }).catch(() => {});
    const all = h('input', { id: 'all', name: 'all', type: 'checkbox' });
    const timeout = h('input', { id: 'timeout', name: 'timeout', type: 'number', min: '1', max: '86400', step: '1', value: '60' });
    const runBtn = h('button', { type: 'submit', id: 'run', class: 'btn primary', text: 'Run' });
    const btnSlot = h('span', { class: 'run-buttons' }, runBtn);
    const formError = h('p', { id: 'exec-form-error', class: 'form-error', role: 'alert', hidden: true });
    const form = h('form', { id: 'exec-form', class: 'exec-form', novalidate: true },
      field('Command (run by /bin/sh -c on each node)', command, 'grow full'),
      h('div', { class: 'form-row' },
        field('Nodes (comma-separated ids or hostnames)', targets, 'grow'),
        field('Labels (k=v,k=v)', labels, 'grow'),
        field('Group (and below)', group),
        h('label', { class: 'check' }, all, ' All nodes'),
        field('Timeout (s)', timeout, 'narrow'),
        btnSlot),
      formError);
    all.addEventListener('change', () => {
      targets.disabled = labels.disabled = group.disabled = all.checked;
    });
    main.appendChild(card('Run a command', form));

    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (run) return;
      formError.hidden = true;
      const fail = (msg) => {
        formError.textContent = msg;
        formError.hidden = false;
      };
      const cmd = command.value.trim();
      if (!cmd) return fail('Enter a command.');
      const nodes = all.checked ? [] : targets.value.split(',').map((s) => s.trim()).filter(Boolean);
      let lbl = {};
      if (!all.checked) {
        try {
          lbl = parseLabels(labels.value);
        } catch (e) {
          return fail(e.message);
        }
      }
      const groups = !all.checked && group.value ? [group.value] : [];
      if (!all.checked && nodes.length === 0 && Object.keys(lbl).length === 0 && groups.length === 0) return fail('Choose nodes, labels, a group, or all nodes.');
      const req = { command: cmd, nodes, labels: lbl, groups, all: all.checked };
      const t = timeout.value.trim();
      if (t) {
        const n = Number(t);
        if (!Number.isInteger(n) || n < 1) return fail('The timeout is a whole number of seconds.');
        req.timeout_secs = n;
      }
      start(req, { runBtn, btnSlot, fail });
    });
  }

  main.appendChild(output);
  if (can('exec.view')) main.appendChild(card('History', history));

  // --- one run --------------------------------------------------------------------------------
  function start(req, ui) {
    const summary = h('div', { id: 'exec-summary', class: 'exec-summary' }, h('span', { class: 'muted', text: 'Starting\u2026' }));
    const nodesEl = h('div', { id: 'exec-nodes', class: 'exec-nodes' });
    const more = h('p', { class: 'muted small', id: 'exec-more', hidden: true });
    const onlyProblems = h('input', { type: 'checkbox', id: 'exec-problems-only' });
    onlyProblems.addEventListener('change', () => nodesEl.classList.toggle('problems-only', onlyProblems.checked));
    fill(output, h('div', { class: 'card-title-row' },
      h('h2', { class: 'card-title' }, 'Output of ', h('code', { text: req.command })),
      h('label', { class: 'check small' }, onlyProblems, ' Hide successful nodes')),
      summary, nodesEl, more);
    output.hidden = false;

    const cancelBtn = h('button', { type: 'button', id: 'cancel', class: 'btn danger', text: 'Cancel' });
    const leaveNote = h('p', { class: 'muted small', id: 'exec-leave-note', text: 'Leaving this page cancels the run on the nodes that have not finished.' });
    output.insertBefore(leaveNote, summary.nextSibling);
    ui.runBtn.disabled = true;
    ui.runBtn.textContent = 'Running\u2026';
    ui.btnSlot.appendChild(cancelBtn);

    const r = {
      ws: new WebSocket(wsUrl('/api/v1/exec')),
      blocks: new Map(),
      hidden: 0,
      targets: 0,
      done: 0,
      counts: {},
      id: null,
      finished: false,
      gotMessage: false,
    };
    run = r;

    const block = (nodeId, hostname) => {
      let b = r.blocks.get(nodeId);
      if (b) return b;
      if (r.blocks.size >= MAX_BLOCKS) {
        return null;
      }
      b = new NodeBlock(nodeId, hostname);
      r.blocks.set(nodeId, b);
      nodesEl.appendChild(b.el);
      return b;
    };
    const showSummary = (state) => {
      const bits = [];
      if (r.id) bits.push(h('a', { href: '#/commands/' + encodeURIComponent(r.id), text: 'Execution ' + shortId(r.id) }));
      bits.push(h('span', { text: ' \u2014 ' + fmtInt(r.targets) + ' node' + (r.targets === 1 ? '' : 's') + ', ' + fmtInt(r.done) + ' done ' }));
      bits.push(countsEl(r.counts));
      if (state) bits.push(' ', stateBadge(state, r.counts));
      fill(summary, bits);
      const notShown = r.targets - r.blocks.size;
      more.hidden = notShown <= 0;
      more.textContent = notShown > 0 ? fmtInt(notShown) + ' more nodes are not shown here; the execution\u2019s page has them all.' : '';
    };

    const finish = (state) => {
      if (r.finished) return;
      r.finished = true;
      if (run === r) run = null;
      cancelBtn.remove();
      leaveNote.remove();
      ui.runBtn.disabled = false;
      ui.runBtn.textContent = 'Run';
      showSummary(state);
      for (const b of r.blocks.values()) {
        if (!b.el.dataset.status) {
          b.status.textContent = state === 'Cancelled' ? 'Cancelled' : 'unknown';
          b.status.className = 'exec-status st-unknown';
        }
      }
      if (r.ws.readyState <= 1) r.ws.close();
      loadHistory();
    };

    cancelBtn.addEventListener('click', () => {
      if (r.ws.readyState === WebSocket.OPEN) r.ws.send(JSON.stringify({ type: 'cancel' }));
      cancelBtn.disabled = true;
      cancelBtn.textContent = 'Cancelling\u2026';
    });

    r.ws.onopen = () => r.ws.send(JSON.stringify(req));
    r.ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return;
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch (_) {
        return;
      }
      r.gotMessage = true;
      if (m.type === 'started') {
        r.id = m.id;
        const ts = m.targets || [];
        r.targets = ts.length;
        r.counts = { unfinished: ts.length };
        for (const t of ts) block(t.node_id, t.hostname);
        if (!ts.length) nodesEl.appendChild(h('p', { class: 'empty', text: 'No node matched.' }));
        showSummary('Running');
      } else if (m.type === 'output') {
        const b = block(m.node_id);
        if (b) b.append(m.stream, m.text);
      } else if (m.type === 'node_done') {
        const res = m.result;
        r.done += 1;
        if (r.counts.unfinished) r.counts.unfinished -= 1;
        const k = String(res.status).toLowerCase();
        r.counts[k] = (r.counts[k] || 0) + 1;
        const b = block(res.node_id, res.hostname);
        if (b) {
          b.done(res);
          b.el.classList.toggle('ok', res.status === 'Ok');
        }
        showSummary('Running');
      } else if (m.type === 'finished') {
        const e = m.execution;
        if (e) {
          r.id = e.id;
          r.counts = Object.assign({}, e.counts);
          r.targets = e.nodes;
          r.done = e.nodes - (e.counts.unfinished || 0);
        }
        finish(e ? e.state : 'Finished');
      } else if (m.type === 'error') {
        if (m.code === 'unauthenticated') {
          unauthenticated();
          return;
        }
        showError(m.message || m.code, m.code);
        ui.fail(m.message || m.code);
        if (!r.id) fill(summary, h('span', { class: 'error-text', text: m.message || m.code }));
        finish(r.id ? 'Error' : null);
      }
    };
    r.ws.onclose = async () => {
      if (r.finished) return;
      if (!r.gotMessage) {
        // The upgrade was refused (an expired session, a bad origin) or the server is away.
        try {
          await api('GET', '/api/v1/me', undefined, { quiet: true });
        } catch (_) { /* a 401 goes to the login page */ }
        ui.fail('The connection to the server failed before the command started.');
        fill(summary, h('span', { class: 'error-text', text: 'Not started: the connection failed.' }));
        finish(null);
        return;
      }
      showError('The connection closed before the command finished; its page has the results.', 'closed');
      finish('Connection lost');
    };
  }

  // --- history --------------------------------------------------------------------------------
  async function loadHistory() {
    if (!can('exec.view') || dead) return;
    let list;
    try {
      list = await api('GET', withQuery('/api/v1/executions', { limit: 50 }));
    } catch (_) {
      return;
    }
    if (dead) return;
    fill(history, list && list.length ? h('div', { class: 'table-wrap' }, h('table', { id: 'executions', class: 'table' },
      h('thead', null, h('tr', null, ['Started', 'User', 'Command', 'Targets', 'Nodes', 'Results', 'State', 'Took'].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', null, list.map((e) => h('tr', { dataset: { executionId: e.id } },
        h('td', null, h('a', { class: 'exec-link', href: '#/commands/' + encodeURIComponent(e.id) }, timeEl(e.created_at_ms, { relOnly: true }))),
        h('td', { text: e.admin }),
        h('td', { class: 'mono ellipsis', title: fmtCommand(e.command) }, h('a', { href: '#/commands/' + encodeURIComponent(e.id), text: fmtCommand(e.command) })),
        h('td', { class: 'ellipsis', title: e.selector, text: e.selector }),
        h('td', { class: 'num', text: fmtInt(e.nodes) }),
        h('td', { title: countsText(e.counts) }, countsEl(e.counts)),
        h('td', null, stateBadge(e.state, e.counts)),
        h('td', { text: e.finished_at_ms ? fmtDuration(e.finished_at_ms - e.created_at_ms) : '' }))))))
      : h('p', { class: 'empty', text: 'No commands yet.' }));
  }

  loadHistory();
  return () => {
    dead = true;
    if (run && run.ws.readyState <= 1) run.ws.close();
    run = null;
  };
}

