// #/deploys/ID: one deploy, live: its state and counts, a bar, and every node's state with
// its download progress, refreshed every second while it runs. Pause, resume, cancel and
// roll back for roles that may deploy.

import { api, h, fill, card, facts, badge, timeEl, fmtBytes, fmtDuration, can, poll, confirmButton } from '../lib.js';
import { progress, bar } from './releases.js';

export function mount(main, ctx) {
  const id = ctx.params[0];
  const path = '/api/v1/deploys/' + encodeURIComponent(id);
  let dead = false;
  const buttons = h('div', { class: 'actions', id: 'deploy-actions' });
  const info = h('div', { id: 'deploy-info' });
  const nodes = h('tbody');
  main.append(
    h('div', { class: 'page-head' }, h('h1', null, 'Deploy ', h('span', { class: 'title-code', text: '#' + id })), buttons,
      h('span', { class: 'muted small', id: 'deploy-updated' })),
    card('Deploy', info),
    card('Nodes', h('div', { class: 'table-wrap' }, h('table', { id: 'deploy-nodes', class: 'table' },
      h('thead', null, h('tr', null, ['Node', 'Wave', 'From', 'To', 'State', 'Progress', 'Took', 'Why']
        .map((t) => h('th', { scope: 'col', text: t })))), nodes))));

  function button(label, action, cls) {
    const b = h('button', { type: 'button', class: 'btn btn-small ' + (cls || ''), id: 'deploy-' + action, text: label });
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        const d = await api('POST', path + '/' + action);
        if (action === 'rollback') location.hash = '#/deploys/' + d.id;
        else await refresh();
      } catch (_) {
        b.disabled = false;
      }
    });
    return b;
  }

  // Built again only when they change: a refresh must not close a question being asked.
  let shownActions = null;
  function renderActions(d) {
    const key = d.state + '/' + d.counts.success;
    if (key === shownActions) return;
    shownActions = key;
    if (!can('versions.deploy')) return fill(buttons);
    const out = [];
    if (d.state === 'running') out.push(button('Pause', 'pause'));
    if (d.state === 'paused' || d.state === 'halted') out.push(button('Resume', 'resume', 'primary'));
    if (!['done', 'cancelled'].includes(d.state)) {
      out.push(confirmButton({
        label: 'Cancel', cls: 'btn-small', id: 'deploy-cancel', question: 'Cancel deploy #' + d.id + '? Nodes not started are left as they are.', confirmLabel: 'Cancel it',
        onConfirm: async () => { await api('POST', path + '/cancel'); await refresh(); },
      }));
    }
    if (d.kind === 'update' && d.counts.success > 0) {
      out.push(confirmButton({
        label: 'Roll back', cls: 'btn-small', id: 'deploy-rollback', question: 'Put the ' + d.counts.success + ' updated nodes back to the agent they ran before?', confirmLabel: 'Roll back',
        onConfirm: async () => {
          const back = await api('POST', path + '/rollback');
          location.hash = '#/deploys/' + back.id;
        },
      }));
    }
    fill(buttons, out);
  }

  function render(s) {
    const d = s.deploy;
    renderActions(d);
    fill(info, facts([
      ['Version', d.kind === 'rollback' ? 'back to the kept agents (rollback of #' + d.rollback_of + ')' : d.version],
      ['State', h('span', null, badge(d.state), d.reason ? h('span', { class: 'muted', text: ' ' + d.reason }) : null)],
      ['Progress', progress(d.counts)],
      ['Strategy', d.strategy + (d.canary ? ', canary ' + d.canary : '') + (d.batch ? ', batches of ' + d.batch : '') + (d.pause_ms ? ', ' + fmtDuration(d.pause_ms) + ' apart' : '')],
      ['Wave', d.wave + ' of ' + d.waves],
      ['Targets', d.targets],
      ['Halts after', (d.max_failures || '0') + ' failures'],
      ['Offline nodes', d.offline === 'wait' ? 'updated when they return' : 'skipped'],
      ['Watchdog', fmtDuration(d.watchdog_ms)],
      ['Started', h('span', null, timeEl(d.created_at_ms), ' by ' + d.created_by)],
      ['Ended', d.finished_at_ms ? timeEl(d.finished_at_ms) : '\u2014'],
    ]));
    fill(nodes, s.nodes.map((u) => {
      const pct = u.size ? Math.min(100, Math.round((u.bytes * 100) / u.size)) : 0;
      const fetching = u.state === 'downloading';
      return h('tr', { 'data-node-id': u.node_id, 'data-state': u.state },
        h('td', null, h('a', { href: '#/nodes/' + encodeURIComponent(u.node_id), text: u.hostname })),
        h('td', { class: 'num', text: String(u.wave) }),
        h('td', { text: u.from_version }), h('td', { text: u.to_version }),
        h('td', null, badge(u.state)),
        h('td', null, fetching ? h('div', { class: 'deploy-progress' }, bar(pct),
          h('span', { class: 'small', text: fmtBytes(u.bytes) + ' of ' + fmtBytes(u.size) })) : null),
        h('td', { text: u.finished_at_ms && u.started_at_ms ? fmtDuration(u.finished_at_ms - u.started_at_ms) : '' }),
        h('td', { class: 'muted', text: u.error || '' }));
    }));
    document.getElementById('deploy-updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  }

  async function refresh() {
    const s = await api('GET', path);
    if (dead) return;
    render(s);
  }
  const stop = poll(() => refresh().catch(() => {}), 1000);
  return () => {
    dead = true;
    stop();
  };
}
