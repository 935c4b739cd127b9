// #/nodes/ID: every fact, live metrics and charts, QUIC path, labels, maintenance, delete,
// allowed users, recent commands and terminal sessions. Live (`node`).

import {
  api, h, fill, card, facts, badge, timeEl, fmtBytes, fmtRate, fmtDuration, fmtInt, fmtPct,
  fmtCommand, can, isAdmin, session, confirmButton, withQuery, poll, field, lonePoints,
} from '../lib.js';
import { watch } from '../live.js';

const KNOWN = new Set(['id', 'hostname', 'status', 'connected', 'maintenance', 'deleted', 'last_seen_ms', 'labels', 'allowed_users',
  'created_at_ms', 'updated_at_ms', 'public_addr', 'clock_skew_ms', 'agent_version', 'static_facts', 'metrics', 'metrics_at_ms',
  'heartbeats_received', 'static_facts_received', 'malformed_datagrams', 'skewed_heartbeats', 'conflict', 'path', 'agent']);

const MAX_POINTS = 3600;

export function mount(main, ctx) {
  const id = ctx.params[0];
  let dead = false;
  let node = null;
  let resolvedId = null;
  let gotLive = false;

  // --- skeleton -------------------------------------------------------------------------------
  const title = h('h1', { class: 'node-title', text: 'Node' });
  const statusEl = h('span', { id: 'node-status', class: 'badge' });
  const pills = h('span', { class: 'pills' });
  const actions = h('div', { class: 'actions' });
  const alerts = h('div', { class: 'alerts' });
  const overview = h('div', { id: 'node-facts' });
  const system = h('div', { id: 'node-system' });
  const metricsEl = h('div', { id: 'node-metrics' });
  const pathEl = h('div', { id: 'node-path' });
  const charts = h('div', { id: 'charts', class: 'charts' });
  const chartsTitle = h('h2', { class: 'card-title card-title-bar' }, h('span', { text: 'Metrics' }));
  const disks = h('div', { id: 'node-disks' });
  const nics = h('div', { id: 'node-nics' });
  const labelList = h('div', { id: 'node-labels', class: 'chips' });
  const allowedList = h('div', { id: 'node-allowed-users', class: 'chips' });
  const execs = h('div', { id: 'node-executions' }, h('p', { class: 'muted', text: 'Loading\u2026' }));
  const sessions = h('div', { id: 'node-sessions' }, h('p', { class: 'muted', text: 'Loading\u2026' }));
  const other = h('div', { id: 'node-other' });

  // Actions, present only when the role allows them.
  // Operators may open terminals only on nodes that allow them (`allowed_users`): the button is
  // added in render() when the user may use it.
  let termBtn = null;
  if (can('tty.open')) {
    termBtn = h('button', { type: 'button', id: 'open-terminal', class: 'btn primary', text: 'Open terminal' });
    termBtn.addEventListener('click', () => ctx.navigate('#/terminal/' + encodeURIComponent(resolvedId || id)));
  }
  let maintBtn = null;
  if (can('nodes.edit')) {
    maintBtn = h('button', { type: 'button', id: 'maintenance-toggle', class: 'btn', text: 'Maintenance' });
    maintBtn.addEventListener('click', async () => {
      if (!node) return;
      maintBtn.disabled = true;
      try {
        render(await api('POST', '/api/v1/nodes/' + encodeURIComponent(resolvedId || id) + '/maintenance', { on: !node.maintenance }));
      } catch (_) { /* shown */ } finally { maintBtn.disabled = false; }
    });
    actions.appendChild(maintBtn);
  }
  if (can('nodes.delete')) {
    actions.appendChild(confirmButton({
      label: 'Delete', id: 'delete-node', question: 'Delete this node? Its identity is revoked.', confirmLabel: 'Delete node',
      onConfirm: async () => {
        await api('DELETE', '/api/v1/nodes/' + encodeURIComponent(resolvedId || id));
        ctx.navigate('#/nodes');
      },
    }));
  }

  // Labels editor
  let labelForm = null;
  if (can('nodes.edit')) {
    const key = h('input', { id: 'label-key', name: 'key', placeholder: 'key', required: true, autocomplete: 'off', spellcheck: 'false' });
    const value = h('input', { id: 'label-value', name: 'value', placeholder: 'value', autocomplete: 'off', spellcheck: 'false' });
    labelForm = h('form', { id: 'label-add', class: 'inline-form' }, field('Key', key), field('Value', value),
      h('button', { type: 'submit', class: 'btn', text: 'Add label' }));
    labelForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      let k = key.value.trim();
      let v = value.value.trim();
      if (k.includes('=') && !v) [k, v] = [k.slice(0, k.indexOf('=')), k.slice(k.indexOf('=') + 1)];
      if (!k) return;
      try {
        render(await api('POST', '/api/v1/nodes/' + encodeURIComponent(resolvedId || id) + '/labels', { set: { [k]: v }, remove: [] }));
        key.value = '';
        value.value = '';
        key.focus();
      } catch (_) { /* shown */ }
    });
  }

  // Allowed users editor
  let allowForm = null;
  if (can('nodes.access')) {
    const name = h('input', { id: 'allowed-user-name', name: 'user', placeholder: 'user name', required: true, autocomplete: 'off', spellcheck: 'false' });
    allowForm = h('form', { id: 'allowed-user-add', class: 'inline-form' }, field('User', name),
      h('button', { type: 'submit', class: 'btn', text: 'Allow' }));
    allowForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const n = name.value.trim();
      if (!n) return;
      try {
        render(await api('POST', '/api/v1/nodes/' + encodeURIComponent(resolvedId || id) + '/allowed-users', { add: [n], remove: [] }));
        name.value = '';
      } catch (_) { /* shown */ }
    });
  }

  main.append(
    h('div', { class: 'crumbs' }, h('a', { href: '#/nodes', text: 'Nodes' }), ' / ', h('span', { class: 'mono', text: id })),
    h('div', { class: 'page-head' }, h('div', { class: 'title-row' }, title, statusEl, pills), actions),
    alerts,
    h('div', { class: 'grid-3' },
      card('Overview', overview),
      card('System', system),
      h('div', { class: 'col' }, card('Latest metrics', metricsEl), card('QUIC path', pathEl))),
    h('section', { class: 'card' }, chartsTitle, charts),
    h('div', { class: 'grid-2' },
      card('Disks', disks),
      card('Network interfaces', nics)),
    h('div', { class: 'grid-2' },
      card('Labels', labelList, labelForm),
      card('Allowed users', h('p', { class: 'muted small', text: 'Besides admins, these users may open terminals on this node.' }), allowedList, allowForm)),
    h('div', { class: 'grid-2' },
      can('exec.view') ? card('Recent commands', execs) : null,
      can('tty.view') ? card('Terminal sessions', sessions) : null),
    other);

  // --- charts ---------------------------------------------------------------------------------
  // "Live" draws each heartbeat as it arrives (since the page opened); the other ranges read
  // the node's history from core (every heartbeat for an hour, then 1-minute and 1-hour
  // aggregates) and are read again every minute.
  const series = { t: [], cpu: [], mem: [], rx: [], tx: [], load: [] };
  let lastMetricsAt = null;
  let plots = [];
  let range = 'live';
  let historyTimer = null;
  const pct = (v) => (v == null ? '\u2014' : v.toFixed(1) + '%');
  const specs = [
    ['CPU %', [['CPU', '#2563eb', 'cpu']], pct, [0, 100]],
    ['Memory %', [['Memory', '#7c3aed', 'mem']], pct, [0, 100]],
    ['Network', [['rx', '#059669', 'rx'], ['tx', '#d97706', 'tx']], (v) => (v == null ? '\u2014' : fmtRate(v)), null],
    ['Load (1 min)', [['load1', '#dc2626', 'load']], (v) => (v == null ? '\u2014' : v.toFixed(2)), null],
  ];
  const RANGES = [['live', 'Live'], ['1h', '1 h'], ['24h', '24 h'], ['7days', '7 d'], ['90days', '90 d']];
  const rangeButtons = RANGES.map(([key, text]) => {
    const b = h('button', { type: 'button', class: 'btn btn-small seg' + (key === range ? ' active' : ''), dataset: { range: key }, 'aria-pressed': String(key === range), text });
    b.addEventListener('click', () => setRange(key));
    return b;
  });
  chartsTitle.append(h('span', { class: 'seg-group', id: 'chart-range', role: 'group', 'aria-label': 'Range' }, rangeButtons));
  const chartBoxes = specs.map(([name], i) => h('div', { class: 'chart', id: 'chart-' + ['cpu', 'mem', 'net', 'load'][i], 'aria-label': name }));
  const chartsNote = h('p', { class: 'muted small', id: 'charts-note' });
  fill(charts, h('div', { class: 'chart-grid' }, chartBoxes), chartsNote);

  function chartWidth(box) {
    return Math.max(200, Math.floor(box.clientWidth || 300));
  }

  function makePlots(data) {
    plots.forEach((p) => p.destroy());
    plots = [];
    if (typeof uPlot === 'undefined') return;
    const live = range === 'live';
    const timeText = (v) => (v == null ? '' : live ? new Date(v * 1000).toLocaleTimeString() : new Date(v * 1000).toLocaleString());
    specs.forEach(([name, ss, fmt, yRange], i) => {
      const box = chartBoxes[i];
      const opts = {
        title: name,
        width: chartWidth(box),
        height: 150,
        cursor: { drag: { x: false, y: false } },
        legend: { live: false },
        scales: {
          // Live: at least the last minute, so one point does not fill the axis.
          x: live ? { time: true, range: (u, min, max) => { const span = Math.max((max - min) || 0, 60); return [max - span, max]; } } : { time: true },
          y: yRange ? { range: () => yRange } : { range: (u, min, max) => [0, Math.max((max || 0) * 1.1, 1e-9)] },
        },
        axes: [
          { stroke: '#6b7280', grid: { stroke: '#eef0f3' }, ticks: { stroke: '#e5e7eb' } },
          { stroke: '#6b7280', grid: { stroke: '#eef0f3' }, ticks: { stroke: '#e5e7eb' }, size: 64, values: (u, vals) => vals.map((v) => fmt(v)) },
        ],
        series: [{ value: (u, v) => timeText(v) }].concat(ss.map(([label, color]) => ({
          label, stroke: color, width: 1.5, fill: color + '1a', value: (u, v) => fmt(v), points: live ? { size: 4 } : { size: 4, show: lonePoints }, spanGaps: false,
        }))),
      };
      plots.push(new uPlot(opts, [data.t].concat(ss.map((x) => data[x[2]])), box));
    });
  }

  function pushPoint(n) {
    const m = n.metrics;
    if (!m || n.metrics_at_ms == null || n.metrics_at_ms === lastMetricsAt) return;
    lastMetricsAt = n.metrics_at_ms;
    series.t.push(n.metrics_at_ms / 1000);
    series.cpu.push(Number(m.cpu_percent));
    series.mem.push(m.memory_total ? 100 * m.memory_used / m.memory_total : null);
    series.rx.push(Number(m.net_rx_bytes_per_sec));
    series.tx.push(Number(m.net_tx_bytes_per_sec));
    series.load.push(Number(m.load1));
    if (series.t.length > MAX_POINTS) for (const k of Object.keys(series)) series[k].shift();
    if (range !== 'live') return;
    if (!plots.length) makePlots(series);
    else plots.forEach((p, i) => p.setData([series.t].concat(specs[i][1].map((x) => series[x[2]]))));
  }

  async function loadChartHistory() {
    const key = range;
    const width = chartWidth(chartBoxes[0]);
    const rangeMs = { '1h': 3600e3, '24h': 86400e3, '7days': 7 * 86400e3, '90days': 90 * 86400e3 }[key];
    // About one point per two pixels; core widens it to what it keeps for that age.
    const stepS = Math.max(1, Math.ceil(rangeMs / 1000 / Math.max(50, width / 2)));
    let a;
    try {
      a = await api('GET', withQuery('/api/v1/nodes/' + encodeURIComponent(id) + '/metrics',
        { range: key, step: stepS + 's', metrics: 'cpu,mem,net_rx,net_tx,load1' }));
    } catch (_) {
      return; // shown
    }
    if (dead || range !== key) return;
    const data = { t: [], cpu: [], mem: [], rx: [], tx: [], load: [] };
    const by = Object.fromEntries(a.series.map((x) => [x.metric, x.avg]));
    for (let i = 0; i < a.samples.length; i++) {
      data.t.push((a.from_ms + i * a.step_ms) / 1000);
      data.cpu.push(by.cpu[i]);
      data.mem.push(by.mem[i]);
      data.rx.push(by.net_rx[i]);
      data.tx.push(by.net_tx[i]);
      data.load.push(by.load1[i]);
    }
    makePlots(data);
    const beats = a.samples.reduce((x, y) => x + y, 0);
    const step = a.step_ms >= 3600e3 ? (a.step_ms / 3600e3) + ' h' : a.step_ms >= 60e3 ? (a.step_ms / 60e3) + ' min' : (a.step_ms / 1e3) + ' s';
    chartsNote.textContent = 'Averages per ' + step + ' (' + { raw: 'every heartbeat', '1m': '1-minute aggregates', '1h': '1-hour aggregates' }[a.resolution]
      + '), ' + fmtInt(beats) + ' heartbeats; gaps are times the node did not report.';
  }

  function setRange(key) {
    range = key;
    rangeButtons.forEach((b) => {
      const on = b.dataset.range === key;
      b.classList.toggle('active', on);
      b.setAttribute('aria-pressed', String(on));
    });
    if (historyTimer) {
      historyTimer();
      historyTimer = null;
    }
    if (key === 'live') {
      chartsNote.textContent = 'Points are added as the node reports metrics (every heartbeat).';
      makePlots(series);
    } else {
      chartsNote.textContent = 'Loading\u2026';
      historyTimer = poll(loadChartHistory, 60000);
    }
  }
  chartsNote.textContent = 'Points are added as the node reports metrics (every heartbeat).';

  const ro = new ResizeObserver(() => {
    plots.forEach((p, i) => {
      const w = chartWidth(chartBoxes[i]);
      if (Math.abs(p.width - w) > 2) p.setSize({ width: w, height: 150 });
    });
  });
  chartBoxes.forEach((b) => ro.observe(b));
  if (typeof uPlot === 'undefined') fill(charts, h('p', { class: 'empty', text: 'Charts are unavailable (uPlot did not load).' }));

  // --- rendering ------------------------------------------------------------------------------
  function render(n) {
    // The address may name the node by hostname or id prefix: its first answer fixes the id.
    if (dead || !n || (resolvedId && n.id !== resolvedId)) return;
    resolvedId = n.id;
    node = n;
    const sf = n.static_facts || null;
    const m = n.metrics || null;
    title.textContent = n.hostname || n.id;
    document.title = (n.hostname || n.id) + ' \u2014 Tether';
    statusEl.textContent = n.status;
    statusEl.className = 'badge s-' + String(n.status).toLowerCase();
    fill(pills,
      h('span', { class: 'pill ' + (n.connected ? 'pill-ok' : 'pill-off'), text: n.connected ? 'connected' : 'not connected' }),
      n.maintenance ? h('span', { class: 'pill pill-maint', text: 'maintenance' }) : null,
      n.deleted ? h('span', { class: 'pill pill-bad', text: 'deleted' }) : null);
    if (termBtn) {
      const mayOpen = !n.deleted && (isAdmin() || (n.allowed_users || []).includes(session.me.name));
      if (mayOpen && !termBtn.isConnected) actions.prepend(termBtn);
      else if (!mayOpen && termBtn.isConnected) termBtn.remove();
    }
    if (maintBtn) maintBtn.textContent = n.maintenance ? 'Leave maintenance' : 'Enter maintenance';

    // Alerts
    const al = [];
    if (n.deleted) al.push(h('div', { class: 'alert alert-bad', text: 'This node is deleted.' }));
    if (n.conflict) {
      const c = n.conflict;
      al.push(h('div', { class: 'alert alert-bad', id: 'node-conflict' },
        h('strong', { text: 'Identity conflict: ' }),
        'another machine (' + (c.hostname || '?') + ' from ' + (c.address || '?') + ') tried to use this node\u2019s identity ' + fmtInt(c.attempts) + ' time' + (c.attempts === 1 ? '' : 's') + '; ' + (c.reason || '') + '. First ',
        timeEl(c.first_at_ms, { relOnly: true }), ', last ', timeEl(c.last_at_ms, { relOnly: true }), '.'));
    }
    if (n.clock_skew_ms != null) {
      al.push(h('div', { class: 'alert alert-warn', id: 'node-clock-skew' },
        h('strong', { text: 'Clock skew: ' }), 'the node\u2019s clock is ' + fmtDuration(Math.abs(n.clock_skew_ms)) + (n.clock_skew_ms > 0 ? ' ahead of' : ' behind') + ' core\u2019s (' + n.clock_skew_ms + ' ms).'));
    }
    fill(alerts, al);

    fill(overview, facts([
      ['ID', h('span', { class: 'mono', text: n.id })],
      ['Hostname', n.hostname],
      ['Status', n.status],
      ['Connected', n.connected ? 'yes' : 'no'],
      ['Maintenance', n.maintenance ? 'on' : 'off'],
      ['Public address', n.public_addr ? h('span', { class: 'mono', text: n.public_addr }) : null],
      ['Group', n.group ? h('a', { id: 'node-group', href: '#/nodes?group=' + encodeURIComponent(n.group.split('/').pop()), text: n.group }) : 'none'],
      ['Policy', n.policy ? h('span', { id: 'node-policy', title: 'From [policy] in the node\u2019s node.toml; the node enforces it', text: policyText(n.policy) }) : 'not reported (an agent older than policies)'],
      ['Agent version', n.agent_version ? h('span', { class: 'mono', text: n.agent_version }) : null],
      ['Agent process', n.agent ? h('span', { id: 'node-agent' }, 'pid ' + n.agent.pid + ', up since ', timeEl(n.agent.started_at_ms),
        ', ' + fmtInt(n.agent.restarts) + (n.agent.restarts === 1 ? ' restart' : ' restarts') + ' since enrollment, CPU ' +
        n.agent.cpu_percent.toFixed(1) + ' %, memory ' + fmtBytes(n.agent.rss_bytes)) : undefined],
      ['Agent\u2019s last error', n.agent && n.agent.last_error ? h('span', { class: 'mono small', text: n.agent.last_error }) : undefined],
      ['Last seen', timeEl(n.last_seen_ms, { none: 'never' })],
      ['Added', timeEl(n.created_at_ms)],
      ['Updated', timeEl(n.updated_at_ms)],
      ['Clock skew', n.clock_skew_ms != null ? n.clock_skew_ms + ' ms' : 'none (within 1 s)'],
      ['Identity conflict', n.conflict ? 'yes (see above)' : 'none'],
      ['Heartbeats', fmtInt(n.heartbeats_received)],
      ['Facts messages', n.static_facts_received != null ? fmtInt(n.static_facts_received) : undefined],
      ['Malformed datagrams', n.malformed_datagrams != null ? fmtInt(n.malformed_datagrams) : undefined],
      ['Skewed heartbeats', n.skewed_heartbeats != null ? fmtInt(n.skewed_heartbeats) : undefined],
    ]));

    fill(system, sf ? facts([
      ['OS', [sf.os_name, sf.os_version].filter(Boolean).join(' ')],
      ['Kernel', sf.kernel_version ? h('span', { class: 'mono', text: sf.kernel_version }) : null],
      ['Architecture', sf.arch],
      ['CPU', sf.cpu_model],
      ['CPUs', sf.cpu_count != null ? String(sf.cpu_count) + (sf.cpu_frequency_mhz ? ' \u00D7 ' + sf.cpu_frequency_mhz + ' MHz' : '') : null],
      ['Memory', fmtBytes(sf.memory_total)],
      ['Swap', fmtBytes(sf.swap_total)],
      ['Virtualization', sf.virtualization || 'none / bare metal'],
      ['GPUs', sf.gpus && sf.gpus.length ? sf.gpus.join(', ') : null],
      ['Booted', sf.boot_time ? timeEl(sf.boot_time * 1000) : null],
      ['Reported hostname', sf.hostname],
      ['Reported agent', sf.agent_version],
    ]) : h('p', { class: 'empty', text: 'No facts received yet.' }));

    fill(metricsEl, m ? facts([
      ['CPU', Number(m.cpu_percent).toFixed(1) + ' %'],
      ['Memory', fmtBytes(m.memory_used) + ' of ' + fmtBytes(m.memory_total) + ' (' + fmtPct(m.memory_used, m.memory_total) + ')'],
      ['Swap', m.swap_total ? fmtBytes(m.swap_used) + ' of ' + fmtBytes(m.swap_total) + ' (' + fmtPct(m.swap_used, m.swap_total) + ')' : 'none'],
      ['Load', [m.load1, m.load5, m.load15].map((x) => Number(x).toFixed(2)).join(' / ')],
      ['Network', '\u2193 ' + fmtRate(m.net_rx_bytes_per_sec) + '  \u2191 ' + fmtRate(m.net_tx_bytes_per_sec)],
      ['Since boot', '\u2193 ' + fmtBytes(m.net_rx_total) + '  \u2191 ' + fmtBytes(m.net_tx_total)],
      ['Temperature', m.temperature_c != null ? Number(m.temperature_c).toFixed(1) + ' \u00B0C' : null],
      ['Processes', fmtInt(m.processes)],
      ['Sockets', 'TCP ' + fmtInt(m.tcp_connections) + ', UDP ' + fmtInt(m.udp_connections)],
      ['Uptime', fmtDuration(m.uptime_secs * 1000)],
      ['Terminals', fmtInt(m.tty_sessions)],
      ['Reported', timeEl(n.metrics_at_ms)],
    ]) : h('p', { class: 'empty', text: 'No metrics since core started.' }));

    const p = n.path;
    fill(pathEl, p ? facts([
      ['RTT', h('span', { id: 'path-rtt', text: Number(p.rtt_ms).toFixed(1) + ' ms' })],
      ['Loss', h('span', { id: 'path-loss', text: (p.sent_packets ? (100 * p.lost_packets / p.sent_packets).toFixed(2) : '0.00') + ' % (' + fmtInt(p.lost_packets) + ' of ' + fmtInt(p.sent_packets) + ' packets)' })],
      ['MTU', h('span', { id: 'path-mtu', text: fmtInt(p.current_mtu) + ' B' })],
      ['Congestion window', p.congestion_window != null ? fmtBytes(p.congestion_window) : undefined],
      ['Lost bytes', p.lost_bytes != null ? fmtBytes(p.lost_bytes) : undefined],
    ]) : h('p', { class: 'empty', text: n.connected ? 'No path statistics.' : 'Not connected.' }));

    // Disks: facts joined with usage by mount point.
    const usage = new Map(((m && m.disks) || []).map((d) => [d.mount, d]));
    const dl = (sf && sf.disks) || [];
    fill(disks, dl.length ? h('table', { class: 'table compact' },
      h('thead', null, h('tr', null, ['Device', 'Mount', 'FS', 'Kind', 'Size', 'Used'].map((t) => h('th', { text: t })))),
      h('tbody', null, dl.map((d) => {
        const u = usage.get(d.mount);
        const pctUsed = u && u.total_bytes ? 100 * u.used_bytes / u.total_bytes : null;
        return h('tr', null,
          h('td', { class: 'mono', text: d.name }),
          h('td', { class: 'mono', title: (d.mounts || []).join(', '), text: d.mount + ((d.mounts || []).length > 1 ? ' (+' + (d.mounts.length - 1) + ')' : '') }),
          h('td', { text: d.filesystem }),
          h('td', { text: d.kind }),
          h('td', { class: 'num', text: fmtBytes(d.total_bytes) }),
          h('td', { class: 'num' }, u ? h('span', { class: 'meter wide' }, h('span', { class: 'meter-text', text: fmtBytes(u.used_bytes) + ' (' + pctUsed.toFixed(0) + '%)' }), h('span', { class: 'meter-track' }, bar(pctUsed))) : ''));
      }))) : h('p', { class: 'empty', text: 'No disks reported.' }));

    const nl = (sf && sf.nics) || [];
    fill(nics, nl.length ? h('table', { class: 'table compact' },
      h('thead', null, h('tr', null, ['Name', 'MAC', 'Addresses', 'Speed'].map((t) => h('th', { text: t })))),
      h('tbody', null, nl.map((c) => h('tr', null,
        h('td', { class: 'mono', text: c.name }),
        h('td', { class: 'mono', text: c.mac || '' }),
        h('td', { class: 'mono' }, (c.addresses || []).map((a) => h('div', { text: String(a) }))),
        h('td', { class: 'num', text: c.speed_mbps ? fmtInt(c.speed_mbps) + ' Mb/s' : '' }))))) : h('p', { class: 'empty', text: 'No interfaces reported.' }));

    const labels = Object.entries(n.labels || {});
    fill(labelList, labels.length ? labels.map(([k, v]) => h('span', { class: 'chip chip-lg', dataset: { label: k } },
      h('span', { class: 'chip-text', text: k + '=' + v }),
      can('nodes.edit') ? h('button', { type: 'button', class: 'chip-x label-remove', 'aria-label': 'Remove label ' + k, title: 'Remove label ' + k, text: '\u00D7', on: { click: () => removeLabel(k) } }) : null))
      : h('span', { class: 'muted', text: 'No labels.' }));

    const users = n.allowed_users || [];
    fill(allowedList, users.length ? users.map((u) => h('span', { class: 'chip chip-lg', dataset: { user: u } },
      h('span', { class: 'chip-text', text: u }),
      can('nodes.access') ? h('button', { type: 'button', class: 'chip-x allowed-remove', 'aria-label': 'Remove ' + u, title: 'Remove ' + u, text: '\u00D7', on: { click: () => removeAllowed(u) } }) : null))
      : h('span', { class: 'muted', text: 'Nobody besides admins.' }));

    const extra = Object.entries(n).filter(([k, v]) => !KNOWN.has(k) && v !== null && typeof v !== 'object');
    fill(other, extra.length ? card('More', facts(extra.map(([k, v]) => [k, String(v)]))) : null);

    pushPoint(n);
  }

  async function removeLabel(k) {
    try {
      render(await api('POST', '/api/v1/nodes/' + encodeURIComponent(resolvedId || id) + '/labels', { set: {}, remove: [k] }));
    } catch (_) { /* shown */ }
  }

  async function removeAllowed(u) {
    try {
      render(await api('POST', '/api/v1/nodes/' + encodeURIComponent(resolvedId || id) + '/allowed-users', { add: [], remove: [u] }));
    } catch (_) { /* shown */ }
  }

  // --- recent commands and sessions -----------------------------------------------------------
  async function loadHistory() {
    const jobs = [];
    if (can('exec.view')) {
      jobs.push(api('GET', withQuery('/api/v1/nodes/' + encodeURIComponent(resolvedId || id) + '/executions', { limit: 10 })).then((list) => {
        if (dead) return;
        fill(execs, list && list.length ? h('table', { class: 'table compact', id: 'node-executions-table' },
          h('thead', null, h('tr', null, ['Started', 'User', 'Command', 'State'].map((t) => h('th', { text: t })))),
          h('tbody', null, list.map((e) => h('tr', { dataset: { executionId: e.id } },
            h('td', null, h('a', { href: '#/commands/' + encodeURIComponent(e.id) }, timeEl(e.created_at_ms, { relOnly: true }))),
            h('td', { text: e.admin }),
            h('td', { class: 'mono ellipsis', title: fmtCommand(e.command), text: fmtCommand(e.command) }),
            h('td', null, badge(e.state)))))) : h('p', { class: 'empty', text: 'No commands ran here yet.' }));
      }));
    }
    if (can('tty.view')) {
      jobs.push(api('GET', withQuery('/api/v1/nodes/' + encodeURIComponent(resolvedId || id) + '/sessions', { limit: 10 })).then((list) => {
        if (dead) return;
        fill(sessions, list && list.length ? h('table', { class: 'table compact', id: 'node-sessions-table' },
          h('thead', null, h('tr', null, ['Started', 'User', 'Status', 'Length', ''].map((t) => h('th', { text: t })))),
          h('tbody', null, list.map((s) => h('tr', { dataset: { sessionId: s.id } },
            h('td', null, timeEl(s.created_at_ms, { relOnly: true })),
            h('td', { text: s.user }),
            h('td', null, badge(s.status)),
            h('td', { text: s.closed_at_ms && (s.connected_at_ms || s.created_at_ms) ? fmtDuration(s.closed_at_ms - (s.connected_at_ms || s.created_at_ms)) : (s.status === 'Connected' ? 'live' : '') }),
            h('td', null, s.recording && can('recordings.view') && (isAdmin() || s.user === session.me.name)
              ? h('a', { class: 'replay', href: '#/sessions/' + encodeURIComponent(s.id), text: 'Replay' }) : null))))) : h('p', { class: 'empty', text: 'No terminal sessions yet.' }));
      }));
    }
    await Promise.allSettled(jobs);
  }

  // --- load -----------------------------------------------------------------------------------
  api('GET', '/api/v1/nodes/' + encodeURIComponent(resolvedId || id)).then((n) => {
    if (!gotLive) render(n);
  }).catch((e) => {
    if (dead) return;
    if (e.status === 404) {
      fill(main, h('div', { class: 'page-pad' }, h('h1', { text: 'Node not found' }),
        h('p', null, 'No node ', h('code', { text: id }), '. ', h('a', { href: '#/nodes', text: 'Back to nodes' }))));
      dead = true;
    }
  });
  watch({ node: id }, (msg) => {
    if (msg.type === 'node' && msg.data && (!resolvedId || msg.data.id === resolvedId)) {
      gotLive = true;
      render(msg.data);
    }
  });
  const stopPoll = poll(loadHistory, 15000);

  return () => {
    dead = true;
    stopPoll();
    ro.disconnect();
    if (historyTimer) historyTimer();
    plots.forEach((p) => p.destroy());
  };
}

function bar(pct) {
  const v = Math.max(0, Math.min(100, Number(pct) || 0));
  const b = h('span', { class: 'meter-fill' + (v >= 90 ? ' hot' : v >= 70 ? ' warm' : '') });
  b.style.width = v + '%';
  return b;
}

/** A node's own policy in words: `commands: only /usr/bin/uptime; terminals: off`. */
function policyText(p) {
  const exec = p.exec === 'off' ? 'none' : p.exec === 'allow-list' ? 'only ' + (p.allow.length ? p.allow.join(', ') : 'none listed') : 'any';
  return 'commands: ' + exec + '; terminals: ' + (p.tty ? 'on' : 'off');
}
