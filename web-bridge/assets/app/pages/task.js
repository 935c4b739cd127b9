// #/tasks/NAME: one task (schedule and its next five runs, targets, command, options) and its
// runs, newest first, each with every node's result and a link to the execution's output.
// Refreshed every 3 seconds while visible, so a run started here is seen to its end.

import { api, h, fill, card, facts, badge, timeEl, fmtDuration, can, poll, shortId } from '../lib.js';
import { inZone, commandText, targetsText, runState } from './tasks.js';

export function mount(main, ctx) {
  const name = decodeURIComponent(ctx.params[0]);
  const path = '/api/v1/tasks/' + encodeURIComponent(name);
  let dead = false;
  const title = h('h1', null, 'Task ', h('span', { class: 'title-code', text: name }));
  const runButton = can('tasks.execute') ? h('button', { type: 'button', class: 'btn primary', id: 'task-run', text: 'Run now' }) : null;
  const info = h('div', { id: 'task-info' });
  const runs = h('div', { id: 'task-runs' });
  main.append(
    h('div', { class: 'page-head' }, title, runButton, h('span', { class: 'muted small', id: 'task-updated' })),
    card('Schedule', info), card('Runs', runs));
  if (runButton) {
    runButton.addEventListener('click', async () => {
      runButton.disabled = true;
      try {
        await api('POST', path + '/run');
        await refresh();
      } catch (_) {
        // Shown by api() (a run going on: 409, in words).
      } finally {
        runButton.disabled = false;
      }
    });
  }

  function renderTask(t) {
    const s = t.task.spec;
    const upcoming = s.enabled && t.upcoming_ms.length
      ? h('ol', { class: 'preview', id: 'task-upcoming' }, t.upcoming_ms.map((ms) => h('li', null,
        h('span', { class: 'mono', text: inZone(ms, s.timezone) }), h('span', { class: 'muted small', text: ' ' + s.timezone + ' \u00B7 ' }), timeEl(ms, { relOnly: true }))))
      : h('span', { class: 'muted', text: 'disabled: runs only by hand' });
    fill(info, facts([
      ['Cron', h('code', { text: s.cron })],
      ['Time zone', s.timezone],
      ['State', badge(s.enabled ? 'enabled' : 'disabled')],
      ['Next runs', upcoming],
      ['Targets', targetsText(s.targets)],
      ['Command', h('code', { text: commandText(s.command) })],
      ['Timeout', fmtDuration(s.timeout_ms)],
      ['Retries', s.retries ? s.retries + ', after ' + fmtDuration(s.retry_interval_ms) : 'none'],
      ['Spread', s.spread_ms ? fmtDuration(s.spread_ms) : 'none'],
      ['Missed runs', s.catch_up === 'one' ? 'one catch-up run at start' : 'not made up'],
      ['Owner', t.task.updated_by],
      ['Description', s.description || '\u2014'],
    ]));
  }

  function renderRuns(list) {
    if (!list.length) {
      fill(runs, h('p', { class: 'empty', text: 'No runs yet.' }));
      return;
    }
    fill(runs, list.map((v) => {
      const r = v.run;
      const took = r.finished_at_ms ? fmtDuration(r.finished_at_ms - r.started_at_ms) : '';
      const head = h('div', { class: 'run-head' },
        h('strong', { text: 'Run ' + r.run }), runState(r), badge(r.trigger, 's-' + r.trigger), timeEl(r.started_at_ms),
        h('span', { class: 'muted', text: 'by ' + r.by }),
        took ? h('span', { class: 'muted', text: 'took ' + took }) : null,
        h('span', { text: r.counts.ok + ' of ' + r.nodes + ' ok' }),
        r.error ? h('span', { class: 'muted', text: r.error }) : null);
      const rows = v.nodes.map((n) => h('tr', { 'data-node-id': n.node_id },
        h('td', null, h('a', { href: '#/nodes/' + encodeURIComponent(n.node_id), text: n.hostname })),
        h('td', null, badge(n.status)),
        h('td', { class: 'num', text: n.exit_code == null ? '' : String(n.exit_code) }),
        h('td', { class: 'num', text: String(n.tries) }),
        h('td', null, can('exec.view') ? h('a', { href: '#/commands/' + encodeURIComponent(n.execution), text: shortId(n.execution) }) : shortId(n.execution)),
        h('td', { class: 'muted', text: n.error || '' })));
      const table = v.nodes.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'table run-nodes' },
        h('thead', null, h('tr', null, ['Node', 'Status', 'Exit', 'Tries', 'Output', 'Why'].map((t) => h('th', { scope: 'col', text: t })))),
        h('tbody', null, rows))) : null;
      return h('section', { class: 'task-run', 'data-run': String(r.run), 'data-state': r.state }, head, table);
    }));
  }

  async function refresh() {
    const [task, list] = await Promise.all([api('GET', path), api('GET', path + '/runs?limit=20')]);
    if (dead) return;
    renderTask(task);
    renderRuns(list);
    document.getElementById('task-updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  }
  const stop = poll(() => refresh().catch(() => {}), 3000);
  return () => {
    dead = true;
    stop();
  };
}
