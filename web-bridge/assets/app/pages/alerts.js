// #/alerts: firing alerts (acknowledge), recent ones, and the rules (admins add, enable,
// disable and delete them). Refreshed every 5 seconds while the tab is visible.

import { api, h, fill, card, field, badge, timeEl, fmtDuration, confirmButton, can, poll, parseLabels, withQuery, groupOptionText } from '../lib.js';

const METRICS = [
  ['cpu', 'CPU %'], ['mem', 'Memory %'], ['mem_used', 'Memory used (bytes)'], ['disk', 'Fullest disk %'],
  ['disk_used', 'Disk used (bytes)'], ['swap', 'Swap %'], ['net_rx', 'Received (bytes/s)'], ['net_tx', 'Sent (bytes/s)'],
  ['load1', 'Load 1 min'], ['load5', 'Load 5 min'], ['load15', 'Load 15 min'], ['procs', 'Processes'],
  ['tcp', 'TCP sockets'], ['udp', 'UDP sockets'], ['temperature', 'Temperature °C'],
];
const OPS = [['gt', '>'], ['gte', '\u2265'], ['lt', '<'], ['lte', '\u2264'], ['eq', '='], ['ne', '\u2260']];
function severity(s) {
  return badge(s, 'sev-' + s);
}

function value(v) {
  if (v == null) return '';
  return Number.isInteger(v) ? String(v) : v.toFixed(2);
}

function nodeLink(a) {
  return h('a', { href: '#/nodes/' + encodeURIComponent(a.node_id), text: a.hostname || a.node_id.slice(0, 8) });
}

/** A rule's condition as the CLI prints it. */
function conditionText(c) {
  if (c === 'offline' || (c && c.offline !== undefined)) return 'offline';
  if (c.clock_skew) return 'clock skew > ' + c.clock_skew.max_ms / 1000 + ' s';
  const t = c.threshold;
  const field = typeof t.field === 'string' ? t.field : fieldText(t.field);
  const op = (OPS.find((o) => o[0] === t.op) || [t.op, t.op])[1];
  return field + ' ' + op + ' ' + t.threshold;
}

function fieldText(f) {
  if (f.series) return f.series;
  if (f.disk_at) return 'disk:' + f.disk_at;
  if (f.disk_used_at) return 'disk_used:' + f.disk_used_at;
  return Object.keys(f)[0];
}

export function mount(main) {
  let dead = false;
  const firingBody = h('tbody');
  const recentBody = h('tbody');
  const rulesBody = h('tbody');
  const firingEmpty = h('p', { class: 'empty', id: 'firing-empty', text: 'Nothing is firing.', hidden: true });
  const head = (cols) => h('thead', null, h('tr', null, cols.map((t) => h('th', { scope: 'col', text: t }))));
  const firingTable = h('table', { id: 'alerts-firing', class: 'table' },
    head(['#', 'Severity', 'Rule', 'Node', 'Condition', 'Value', 'Since', 'Acknowledged']), firingBody);
  const recentTable = h('table', { id: 'alerts-recent', class: 'table' },
    head(['#', 'State', 'Severity', 'Rule', 'Node', 'Value', 'Fired', 'Resolved', 'Why']), recentBody);
  const rulesTable = h('table', { id: 'alert-rules', class: 'table' },
    head(['Name', 'Severity', 'Condition', 'For', 'Targets', 'Channels', 'State', '']), rulesBody);

  main.append(
    h('div', { class: 'page-head' }, h('h1', { text: 'Alerts' }), h('span', { class: 'muted small', id: 'alerts-updated' })),
    card('Firing', h('div', { class: 'table-wrap' }, firingTable), firingEmpty),
    card('Rules', h('div', { class: 'table-wrap' }, rulesTable), can('alerts.manage') ? ruleForm() : null),
    card('Recent', h('div', { class: 'table-wrap' }, recentTable)));

  function ackCell(a) {
    if (a.acked_by) return h('span', null, a.acked_by + ' ', timeEl(a.acked_at_ms));
    if (!can('alerts.ack')) return h('span', { class: 'muted', text: 'no' });
    const b = h('button', { type: 'button', class: 'btn btn-small ack', text: 'Acknowledge' });
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        await api('POST', '/api/v1/alerts/' + a.id + '/ack');
        await refresh();
      } catch (_) { b.disabled = false; }
    });
    return b;
  }

  function renderAlerts(firing, recent) {
    fill(firingBody, firing.map((a) => h('tr', { 'data-id': a.id },
      h('td', { text: String(a.id) }), h('td', null, severity(a.severity)), h('td', { text: a.rule }),
      h('td', null, nodeLink(a)), h('td', null, h('code', { text: a.condition })), h('td', { class: 'num', text: value(a.value) }),
      h('td', null, timeEl(a.since_ms)), h('td', null, ackCell(a)))));
    firingTable.hidden = !firing.length;
    firingEmpty.hidden = !!firing.length;
    fill(recentBody, recent.map((a) => h('tr', { 'data-id': a.id },
      h('td', { text: String(a.id) }),
      h('td', null, badge(a.state)),
      h('td', null, severity(a.severity)), h('td', { text: a.rule }), h('td', null, nodeLink(a)),
      h('td', { class: 'num', text: value(a.value) }), h('td', null, timeEl(a.fired_at_ms)),
      h('td', null, a.resolved_at_ms ? timeEl(a.resolved_at_ms) : ''), h('td', { class: 'muted', text: a.resolution || '' }))));
  }

  function renderRules(rules) {
    if (!rules.length) {
      fill(rulesBody, h('tr', null, h('td', { colspan: '8', class: 'empty', text: 'No rules yet.' })));
      return;
    }
    fill(rulesBody, rules.map((r) => {
      const targets = (r.targets.labels || []).map(([k, v]) => k + '=' + v).concat((r.targets.nodes || []).map((n) => n.slice(0, 8)))
        .concat((r.targets.groups || []).map((g) => 'group ' + g));
      let actions = null;
      if (can('alerts.manage')) {
        const toggle = h('button', { type: 'button', class: 'btn btn-small toggle-rule', text: r.enabled ? 'Disable' : 'Enable' });
        toggle.addEventListener('click', async () => {
          toggle.disabled = true;
          try {
            await api('POST', '/api/v1/alert-rules/' + encodeURIComponent(r.name) + '/enabled', { enabled: !r.enabled });
            await refresh();
          } catch (_) { toggle.disabled = false; }
        });
        const del = confirmButton({
          label: 'Delete', cls: 'btn-small delete-rule', question: 'Delete rule ' + r.name + '? Its firing alerts resolve.', confirmLabel: 'Delete',
          onConfirm: async () => {
            await api('DELETE', '/api/v1/alert-rules/' + encodeURIComponent(r.name));
            await refresh();
          },
        });
        actions = h('div', { class: 'actions' }, toggle, del);
      }
      return h('tr', { 'data-name': r.name },
        h('td', { text: r.name }), h('td', null, severity(r.severity)), h('td', null, h('code', { text: conditionText(r.condition) })),
        h('td', { text: r.for_ms ? fmtDuration(r.for_ms) : 'at once' }), h('td', { text: targets.length ? targets.join(', ') : 'all nodes' }),
        h('td', { text: (r.channels || []).join(', ') || 'none' }),
        h('td', null, badge(r.enabled ? 'enabled' : 'disabled')), h('td', null, actions));
    }));
  }

  function ruleForm() {
    const name = h('input', { id: 'rule-name', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'cpu-high' });
    const kind = h('select', { id: 'rule-kind' }, [['threshold', 'A metric crosses a threshold'], ['offline', 'The node is offline'], ['clock_skew', 'The node\u2019s clock is off']]
      .map(([v, t]) => h('option', { value: v, text: t })));
    const metric = h('select', { id: 'rule-metric' }, METRICS.map(([v, t]) => h('option', { value: v, text: t })));
    const op = h('select', { id: 'rule-op' }, OPS.map(([v, t]) => h('option', { value: v, text: t })));
    const threshold = h('input', { id: 'rule-threshold', type: 'number', step: 'any', value: '90' });
    const skew = h('input', { id: 'rule-skew', type: 'number', min: '1', value: '30' });
    const forMin = h('input', { id: 'rule-for', type: 'number', min: '0', step: 'any', value: '5' });
    const sev = h('select', { id: 'rule-severity' }, ['critical', 'warning', 'info'].map((s) => h('option', { value: s, text: s })));
    sev.value = 'warning';
    const labels = h('input', { id: 'rule-labels', placeholder: 'env=prod, role=db', autocomplete: 'off', spellcheck: 'false' });
    const group = h('select', { id: 'rule-group' }, h('option', { value: '', text: '(any group)' }));
    api('GET', '/api/v1/groups').then((list) => {
      if (dead) return;
      for (const g of list) group.append(h('option', { value: g.name, text: groupOptionText(g) }));
    }).catch(() => {});
    const channels = h('span', { id: 'rule-channels', class: 'checks' });
    const error = h('p', { class: 'form-error', id: 'rule-form-error', role: 'alert', hidden: true });
    const thresholdFields = h('span', { class: 'form-row wrap' }, field('Metric', metric), field('Operator', op), field('Threshold', threshold));
    const skewField = field('Skew over (seconds)', skew);
    const sync = () => {
      thresholdFields.hidden = kind.value !== 'threshold';
      skewField.hidden = kind.value !== 'clock_skew';
    };
    kind.addEventListener('change', sync);
    sync();
    api('GET', '/api/v1/alert-channels').then((list) => {
      if (dead) return;
      fill(channels, list.length ? list.map((c) => h('label', { class: 'check' },
        h('input', { type: 'checkbox', value: c.name, name: 'channel' }), ' ' + c.name)) : h('span', { class: 'muted small', text: 'no channels (tether alert channel add)' }));
    }).catch(() => {});
    const form = h('form', { id: 'rule-add', class: 'form-row wrap', novalidate: true },
      field('Name', name), field('Fires when', kind), thresholdFields, skewField,
      field('For (minutes)', forMin), field('Severity', sev), field('Only nodes labelled (optional)', labels),
      field('Or in group (and below)', group),
      field('Tell', channels),
      h('button', { type: 'submit', class: 'btn primary', text: 'Add rule' }));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.hidden = true;
      const body = {
        name: name.value.trim(),
        kind: kind.value,
        for_s: Math.round(Number(forMin.value || 0) * 60),
        severity: sev.value,
        channels: [...channels.querySelectorAll('input:checked')].map((c) => c.value),
        groups: group.value ? [group.value] : [],
      };
      try {
        body.labels = Object.entries(parseLabels(labels.value));
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
        return;
      }
      if (kind.value === 'threshold') {
        body.metric = metric.value;
        body.op = op.value;
        body.threshold = Number(threshold.value);
      }
      if (kind.value === 'clock_skew') body.max_skew_s = Math.round(Number(skew.value));
      try {
        await api('POST', '/api/v1/alert-rules', body);
        name.value = '';
        await refresh();
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
      }
    });
    return h('div', { class: 'subform' }, h('h3', { text: 'Add a rule' }), form, error);
  }

  async function refresh() {
    const [firing, recent, rules] = await Promise.all([
      api('GET', withQuery('/api/v1/alerts', { firing: 'true', limit: 500 })),
      api('GET', withQuery('/api/v1/alerts', { limit: 50 })),
      api('GET', '/api/v1/alert-rules'),
    ]);
    if (dead) return;
    renderAlerts(firing, recent);
    renderRules(rules);
    document.getElementById('alerts-updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  }
  const stop = poll(() => refresh().catch(() => {}), 5000);
  return () => {
    dead = true;
    stop();
  };
}
