// #/commands/ID: one execution, each node's status, exit code and kept output.

import { api, h, fill, card, facts, timeEl, fmtInt, fmtDuration, fmtCommand, field, poll } from '../lib.js';
import { NodeBlock, countsEl, stateBadge } from './exec-common.js';

const PAGE = 200;

export function mount(main, ctx) {
  const id = ctx.params[0];
  let dead = false;
  let shownCount = PAGE;
  let detail = null;

  const info = h('div', { id: 'execution-facts' }, h('p', { class: 'muted', text: 'Loading\u2026' }));
  const filterSel = h('select', { id: 'exec-node-filter' },
    ['all', 'problems', 'Ok', 'Failed', 'Timeout', 'Offline', 'Cancelled', 'Error', 'Interrupted', 'Running'].map((v) =>
      h('option', { value: v, text: v === 'all' ? 'All nodes' : v === 'problems' ? 'All but Ok' : v })));
  const hostFilter = h('input', { id: 'exec-host-filter', type: 'search', placeholder: 'hostname', autocomplete: 'off' });
  const nodesEl = h('div', { id: 'exec-nodes', class: 'exec-nodes' });
  const moreBtn = h('button', { type: 'button', class: 'btn', id: 'exec-show-more', hidden: true, text: 'Show more' });
  const title = h('h1', { text: 'Command' });

  main.append(
    h('div', { class: 'crumbs' }, h('a', { href: '#/commands', text: 'Commands' }), ' / ', h('span', { class: 'mono', text: id })),
    h('div', { class: 'page-head' }, title),
    card('Execution', info),
    card('Nodes', h('div', { class: 'toolbar' }, field('Show', filterSel), field('Hostname', hostFilter, 'grow')), nodesEl, moreBtn));

  filterSel.addEventListener('change', () => { shownCount = PAGE; renderNodes(); });
  hostFilter.addEventListener('input', () => { shownCount = PAGE; renderNodes(); });
  moreBtn.addEventListener('click', () => { shownCount += PAGE; renderNodes(); });

  function renderNodes() {
    if (!detail) return;
    const f = filterSel.value;
    const q = hostFilter.value.trim().toLowerCase();
    const list = (detail.nodes || []).filter((n) => (f === 'all' || (f === 'problems' ? n.status !== 'Ok' : n.status === f))
      && (!q || String(n.hostname).toLowerCase().includes(q) || String(n.node_id).startsWith(q)));
    const shown = list.slice(0, shownCount);
    fill(nodesEl, shown.length ? shown.map((n) => {
      const b = new NodeBlock(n.node_id, n.hostname);
      b.done(n);
      if (n.stdout) b.append('stdout', n.stdout);
      if (n.stderr) b.append('stderr', n.stderr);
      if (!n.stdout && !n.stderr) b.pre.appendChild(h('span', { class: 'muted', text: n.stdout_bytes || n.stderr_bytes ? '(output not kept)' : '(no output)' }));
      if (n.error && !['Offline', 'Error', 'Cancelled', 'Interrupted', 'Timeout'].includes(n.status)) b.meta.textContent += ' \u00B7 ' + n.error;
      return b.el;
    }) : h('p', { class: 'empty', text: 'No nodes match.' }));
    moreBtn.hidden = list.length <= shown.length;
    moreBtn.textContent = 'Show more (' + fmtInt(list.length - shown.length) + ' left)';
  }

  async function load() {
    const d = await api('GET', '/api/v1/executions/' + encodeURIComponent(id));
    if (dead) return;
    detail = d;
    const e = d.execution;
    fill(title, 'Command ', h('code', { class: 'title-code', text: fmtCommand(e.command) }));
    fill(info, facts([
      ['ID', h('span', { class: 'mono', text: e.id })],
      ['Command', h('code', { text: fmtCommand(e.command) })],
      ['Run by', e.admin],
      ['Targets', e.selector],
      ['Nodes', fmtInt(e.nodes)],
      ['Results', countsEl(e.counts)],
      ['State', stateBadge(e.state, e.counts)],
      ['Started', timeEl(e.created_at_ms)],
      ['Finished', timeEl(e.finished_at_ms, { none: e.state === 'Running' ? 'still running' : '\u2014' })],
      ['Took', e.finished_at_ms ? fmtDuration(e.finished_at_ms - e.created_at_ms) : null],
      ['Timeout', e.timeout_ms ? fmtDuration(e.timeout_ms) : null],
      ['Directory', e.cwd || null],
      ['Environment', e.env_keys && e.env_keys.length ? e.env_keys.join(', ') + ' (values not stored)' : null],
      ['Output', e.output_pruned_at_ms ? h('span', null, 'deleted to keep stored output within its limit ', timeEl(e.output_pruned_at_ms, { relOnly: true })) : 'kept'],
    ]));
    renderNodes();
    return e.state;
  }

  // Refresh while it runs.
  let stop = null;
  stop = poll(async () => {
    const state = await load().catch((err) => {
      if (err && err.status === 404) {
        fill(info, h('p', { class: 'empty', text: 'No such execution.' }));
        return 'missing';
      }
      throw err;
    });
    if (state !== 'Running' && stop) stop();
  }, 2000);
  return () => {
    dead = true;
    if (stop) stop();
  };
}
