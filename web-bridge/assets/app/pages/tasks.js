// #/tasks: scheduled tasks (schedule, targets, next and last run; enable, disable, run now,
// delete) and the form that adds one, with the next five run times as core reads the cron
// expression, shown in the task's time zone. Refreshed every 5 seconds while visible.

import {
  api, h, fill, card, field, badge, timeEl, fmtDuration, fmtCommand, confirmButton, can, poll,
  parseLabels, debounce, groupOptionText,
} from '../lib.js';

/** A time in time zone `tz`: "Tue 2026-12-01 03:00:00". */
export function inZone(ms, tz) {
  try {
    const parts = new Intl.DateTimeFormat('en-GB', {
      timeZone: tz, weekday: 'short', year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
    }).formatToParts(new Date(ms));
    const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
    return p.weekday + ' ' + p.year + '-' + p.month + '-' + p.day + ' ' + p.hour + ':' + p.minute + ':' + p.second;
  } catch (_) {
    return new Date(ms).toISOString();
  }
}

/** What a task runs, as one line. */
export function commandText(c) {
  if (c.Command) return fmtCommand(c.Command);
  if (c.Script) return 'script ' + c.Script.name;
  return '';
}

/** Its targets, as the CLI writes them. */
export function targetsText(t) {
  const parts = [];
  for (const n of t.nodes || []) parts.push('node ' + n);
  for (const [k, v] of t.labels || []) parts.push(k + '=' + v);
  for (const g of t.groups || []) parts.push('group ' + g);
  if (t.all) parts.push('all nodes');
  return parts.join(', ');
}

export function runState(run) {
  return badge(run.state);
}

export function mount(main) {
  let dead = false;
  const body = h('tbody');
  const head = h('thead', null, h('tr', null, ['Task', 'Schedule', 'Targets', 'Command', 'Next run', 'Last run', 'State', '']
    .map((t) => h('th', { scope: 'col', text: t }))));
  const table = h('table', { id: 'tasks', class: 'table' }, head, body);
  main.append(
    h('div', { class: 'page-head' }, h('h1', { text: 'Scheduled tasks' }), h('span', { class: 'muted small', id: 'tasks-updated' })),
    card('Tasks', h('div', { class: 'table-wrap' }, table)),
    can('tasks.create') ? card('Add a task', taskForm()) : null);

  function actions(t) {
    const name = t.task.spec.name;
    const path = '/api/v1/tasks/' + encodeURIComponent(name);
    const out = [];
    if (can('tasks.execute')) {
      const run = h('button', { type: 'button', class: 'btn btn-small run-task', text: 'Run now' });
      run.addEventListener('click', async () => {
        run.disabled = true;
        try {
          await api('POST', path + '/run');
          location.hash = '#/tasks/' + encodeURIComponent(name);
        } catch (_) { run.disabled = false; }
      });
      out.push(run);
    }
    if (can('tasks.create')) {
      const on = t.task.spec.enabled;
      const toggle = h('button', { type: 'button', class: 'btn btn-small toggle-task', text: on ? 'Disable' : 'Enable' });
      toggle.addEventListener('click', async () => {
        toggle.disabled = true;
        try {
          await api('POST', path + '/enabled', { enabled: !on });
          await refresh();
        } catch (_) { toggle.disabled = false; }
      });
      out.push(toggle);
    }
    if (can('tasks.delete')) {
      out.push(confirmButton({
        label: 'Delete', cls: 'btn-small delete-task', question: 'Delete task ' + name + ' and its run history? A run going on is cancelled.', confirmLabel: 'Delete',
        onConfirm: async () => {
          await api('DELETE', path);
          await refresh();
        },
      }));
    }
    return h('div', { class: 'actions' }, out);
  }

  function render(tasks) {
    if (!tasks.length) {
      fill(body, h('tr', null, h('td', { colspan: '8', class: 'empty', text: 'No tasks yet.' })));
      return;
    }
    fill(body, tasks.map((t) => {
      const s = t.task.spec;
      const next = s.enabled && t.upcoming_ms.length ? timeEl(t.upcoming_ms[0], { relOnly: true }) : h('span', { class: 'muted', text: '\u2014' });
      const last = t.last ? h('span', null, runState(t.last), ' ', timeEl(t.last.started_at_ms, { relOnly: true })) : h('span', { class: 'muted', text: 'never' });
      return h('tr', { 'data-name': s.name },
        h('td', null, h('a', { href: '#/tasks/' + encodeURIComponent(s.name), text: s.name })),
        h('td', null, h('code', { text: s.cron }), h('span', { class: 'muted small', text: ' ' + s.timezone })),
        h('td', { text: targetsText(s.targets) }),
        h('td', null, h('code', { text: commandText(s.command) })),
        h('td', null, next), h('td', null, last),
        h('td', null, badge(s.enabled ? 'enabled' : 'disabled')),
        h('td', null, actions(t)));
    }));
  }

  function taskForm() {
    const name = h('input', { id: 'task-name', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'nightly-backup' });
    const cron = h('input', { id: 'task-cron', required: true, autocomplete: 'off', spellcheck: 'false', value: '0 3 * * *', class: 'mono' });
    const zones = (Intl.supportedValuesOf ? Intl.supportedValuesOf('timeZone') : []);
    const zoneList = h('datalist', { id: 'task-zones' }, ['UTC', ...zones].map((z) => h('option', { value: z })));
    const tz = h('input', { id: 'task-timezone', list: 'task-zones', autocomplete: 'off', spellcheck: 'false', value: 'UTC' });
    const command = h('input', { id: 'task-command', autocomplete: 'off', spellcheck: 'false', placeholder: 'shell command, e.g. /usr/local/bin/backup --quiet', class: 'mono' });
    const group = h('select', { id: 'task-group' }, h('option', { value: '', text: '(no group)' }));
    const labels = h('input', { id: 'task-labels', placeholder: 'env=prod, role=db', autocomplete: 'off', spellcheck: 'false' });
    const nodes = h('input', { id: 'task-nodes', placeholder: 'web-01, db-*', autocomplete: 'off', spellcheck: 'false' });
    const all = h('input', { id: 'task-all', type: 'checkbox' });
    const timeout = h('input', { id: 'task-timeout', type: 'number', min: '1', value: '300' });
    const retries = h('input', { id: 'task-retries', type: 'number', min: '0', max: '10', value: '0' });
    const retryInterval = h('input', { id: 'task-retry-interval', type: 'number', min: '0', value: '60' });
    const spread = h('input', { id: 'task-spread', type: 'number', min: '0', value: '0' });
    const catchUp = h('select', { id: 'task-catch-up' }, [['one', 'one run'], ['none', 'none']].map(([v, t]) => h('option', { value: v, text: t })));
    const preview = h('ol', { id: 'task-preview', class: 'preview' });
    const previewError = h('p', { class: 'form-error', id: 'task-preview-error', role: 'status', hidden: true });
    const error = h('p', { class: 'form-error', id: 'task-form-error', role: 'alert', hidden: true });
    api('GET', '/api/v1/groups').then((list) => {
      if (dead) return;
      for (const g of list) group.append(h('option', { value: g.name, text: groupOptionText(g) + ' (' + g.nodes_total + ')' }));
    }).catch(() => {});

    const showPreview = debounce(async () => {
      const expr = cron.value.trim();
      const zone = tz.value.trim() || 'UTC';
      if (!expr) return;
      try {
        const answer = await api('GET', '/api/v1/cron-preview?' + new URLSearchParams({ cron: expr, timezone: zone, count: '5' }), undefined, { quiet: true });
        if (dead) return;
        previewError.hidden = true;
        fill(preview, answer.times_ms.map((ms) => h('li', null,
          h('span', { class: 'mono', text: inZone(ms, zone) }), h('span', { class: 'muted small', text: ' ' + zone + ' \u00B7 ' }), timeEl(ms, { relOnly: true }))));
      } catch (e) {
        if (dead) return;
        fill(preview);
        previewError.textContent = e.message;
        previewError.hidden = false;
      }
    }, 250);
    cron.addEventListener('input', showPreview);
    tz.addEventListener('input', showPreview);
    tz.addEventListener('change', showPreview);
    showPreview();

    const form = h('form', { id: 'task-add', novalidate: true },
      h('div', { class: 'form-row wrap' }, field('Name', name), field('Cron (min hour day month weekday; optional leading seconds; @daily)', cron), field('Time zone', tz), zoneList),
      h('div', { class: 'subform' }, h('h3', { text: 'Next five runs' }), preview, previewError),
      h('div', { class: 'form-row wrap' }, field('Command (run with /bin/sh -c)', command, 'grow')),
      h('div', { class: 'form-row wrap' }, field('Group (and below)', group), field('Labels', labels), field('Nodes', nodes),
        h('label', { class: 'check' }, all, ' all nodes')),
      h('div', { class: 'form-row wrap' }, field('Timeout (s)', timeout), field('Retries', retries), field('Retry after (s)', retryInterval),
        field('Spread starts over (s)', spread), field('Missed while core was down', catchUp)),
      h('button', { type: 'submit', class: 'btn primary', text: 'Add task' }));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.hidden = true;
      const fail = (m) => { error.textContent = m; error.hidden = false; };
      let lbl;
      try {
        lbl = Object.entries(parseLabels(labels.value));
      } catch (e) {
        return fail(e.message);
      }
      const body = {
        name: name.value.trim(), cron: cron.value.trim(), timezone: tz.value.trim() || 'UTC',
        command: command.value, labels: lbl, all: all.checked,
        groups: group.value ? [group.value] : [],
        nodes: nodes.value.split(',').map((s) => s.trim()).filter(Boolean),
        timeout_s: Number(timeout.value || 300), retries: Number(retries.value || 0),
        retry_interval_s: Number(retryInterval.value || 0), spread_s: Number(spread.value || 0),
        catch_up: catchUp.value,
      };
      try {
        await api('POST', '/api/v1/tasks', body, { quiet: true });
        name.value = '';
        await refresh();
      } catch (e) {
        fail(e.message);
      }
    });
    return h('div', null, form, error);
  }

  async function refresh() {
    const tasks = await api('GET', '/api/v1/tasks');
    if (dead) return;
    render(tasks);
    document.getElementById('tasks-updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  }
  const stop = poll(() => refresh().catch(() => {}), 5000);
  return () => {
    dead = true;
    stop();
  };
}
