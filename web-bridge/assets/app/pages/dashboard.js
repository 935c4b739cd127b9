// #/: fleet counts, status distribution, agent versions, recent events; live (`overview`).

import { api, h, fill, card, badge, timeEl, fmtInt, can, poll, withQuery, lonePoints } from '../lib.js';
import { watch } from '../live.js';

export function mount(main) {
  let dead = false;
  const stat = (id, label, cls, href) => h(href ? 'a' : 'div', { class: 'stat ' + cls, href },
    h('div', { class: 'stat-label', text: label }),
    h('div', { class: 'stat-value', id, text: '\u2013' }));
  const stats = h('div', { class: 'stats' },
    stat('stat-total', 'Nodes', 'stat-total', '#/nodes'),
    stat('stat-agents', 'Agents running', 'stat-online', '#/nodes?status=online'),
    stat('stat-online', 'Online', 'stat-online', '#/nodes?status=online'),
    stat('stat-offline', 'Offline', 'stat-offline', '#/nodes?status=offline'),
    stat('stat-maintenance', 'Maintenance', 'stat-maintenance', '#/nodes?status=maintenance'),
    stat('stat-pending', 'Pending applications', 'stat-pending', can('enroll.view') ? '#/enroll' : null),
    can('alerts.view') ? stat('stat-alerts', 'Alerts firing', 'stat-alerts', '#/alerts') : null);
  const distBar = h('div', { class: 'dist-bar', id: 'status-bar', role: 'img', 'aria-label': 'Status distribution' });
  const distLegend = h('div', { class: 'dist-legend' });
  const versions = h('div', { id: 'versions' });
  const events = h('ol', { id: 'events', class: 'events' });
  const updated = h('span', { class: 'muted small', id: 'overview-updated' });
  const trendBoxes = ['cpu', 'mem'].map((k) => h('div', { class: 'chart', id: 'trend-' + k }));
  const trendNote = h('p', { class: 'muted small', id: 'trend-note', text: 'Loading\u2026' });
  let trendPlots = [];

  main.append(
    h('div', { class: 'page-head' }, h('h1', { text: 'Dashboard' }), updated),
    stats,
    h('div', { class: 'grid-2' },
      h('div', { class: 'col' },
        card('Status', distBar, distLegend),
        card('Agent versions', versions)),
      card('Recent events', events)),
    card('Fleet, last 24 hours', h('div', { class: 'charts' }, h('div', { class: 'chart-grid trend-grid' }, trendBoxes)), trendNote));

  // The fleet's trend: each 15 minutes, the median node and the 95th percentile (core keeps
  // both with every history write), read again every minute.
  async function loadTrend() {
    const a = await api('GET', withQuery('/api/v1/fleet/metrics', { range: '24h', step: '15m', metrics: 'cpu,mem' }));
    if (dead || typeof uPlot === 'undefined') return;
    const t = a.samples.map((_, i) => (a.from_ms + i * a.step_ms) / 1000);
    const pick = (list, m) => list.find((x) => x.metric === m).avg;
    trendPlots.forEach((p) => p.destroy());
    trendPlots = [['cpu', 'CPU % across nodes'], ['mem', 'Memory % across nodes']].map(([m, title], i) => {
      const box = trendBoxes[i];
      const pct = (v) => (v == null ? '\u2014' : v.toFixed(1) + '%');
      return new uPlot({
        title,
        width: Math.max(200, Math.floor(box.clientWidth || 300)),
        height: 160,
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: () => [0, 100] } },
        axes: [
          { stroke: '#6b7280', grid: { stroke: '#eef0f3' }, ticks: { stroke: '#e5e7eb' } },
          { stroke: '#6b7280', grid: { stroke: '#eef0f3' }, ticks: { stroke: '#e5e7eb' }, size: 64, values: (u, vals) => vals.map(pct) },
        ],
        series: [
          { value: (u, v) => (v == null ? '' : new Date(v * 1000).toLocaleString()) },
          { label: 'median', stroke: '#2563eb', width: 1.5, value: (u, v) => pct(v), points: { size: 4, show: lonePoints } },
          { label: '95th percentile', stroke: '#dc2626', width: 1.5, dash: [4, 3], value: (u, v) => pct(v), points: { size: 4, show: lonePoints } },
        ],
      }, [t, pick(a.median, m), pick(a.p95, m)], box);
    });
    const points = a.samples.filter((n) => n > 0).length;
    trendNote.textContent = points
      ? 'Median and 95th percentile of the nodes\u2019 heartbeats, averaged per ' + (a.step_ms / 60000) + ' minutes.'
      : 'No heartbeats in the last 24 hours yet.';
  }
  const stopTrend = poll(loadTrend, 60000);

  function render(o) {
    if (dead || !o) return;
    const n = o.nodes || {};
    const set = (id, v) => { document.getElementById(id).textContent = String(v ?? 0); };
    set('stat-total', n.total);
    set('stat-online', n.online);
    set('stat-offline', n.offline);
    set('stat-maintenance', n.maintenance);
    set('stat-pending', o.pending_applications);
    set('stat-agents', o.agents_running);
    const alerts = document.getElementById('stat-alerts');
    if (alerts) {
      alerts.textContent = String(o.alerts_firing ?? 0);
      alerts.parentElement.classList.toggle('firing', (o.alerts_firing || 0) > 0);
    }
    updated.textContent = 'updated ' + new Date().toLocaleTimeString();

    const total = n.total || 0;
    const parts = [['online', 'Online', n.online || 0], ['offline', 'Offline', n.offline || 0], ['maintenance', 'Maintenance', n.maintenance || 0]];
    fill(distBar, parts.filter((p) => p[2] > 0).map(([k, label, v]) => {
      const seg = h('a', { class: 'seg seg-' + k, href: '#/nodes?status=' + k, title: label + ': ' + fmtInt(v) });
      seg.style.width = (100 * v / total) + '%';
      return seg;
    }));
    if (!total) distBar.appendChild(h('span', { class: 'seg-empty', text: 'No nodes yet' }));
    fill(distLegend, parts.map(([k, label, v]) => h('span', { class: 'legend-item' },
      h('span', { class: 'swatch seg-' + k }), label + ' ', h('strong', { text: fmtInt(v) }),
      total ? h('span', { class: 'muted', text: ' (' + (100 * v / total).toFixed(1) + ' %)' }) : null)));

    const vs = (o.versions || []).slice().sort((a, b) => b.count - a.count);
    const vmax = vs.reduce((m, v) => Math.max(m, v.count), 0);
    fill(versions, vs.length ? h('table', { class: 'table compact', id: 'versions-table' },
      h('thead', null, h('tr', null, h('th', { text: 'Agent version' }), h('th', { class: 'num', text: 'Nodes' }), h('th', { class: 'bar-col', text: '' }))),
      h('tbody', null, vs.map((v) => {
        const bar = h('span', { class: 'hbar' });
        bar.style.width = (vmax ? 100 * v.count / vmax : 0) + '%';
        return h('tr', null, h('td', null, h('code', { text: v.version || '(unknown)' })), h('td', { class: 'num', text: fmtInt(v.count) }),
          h('td', { class: 'bar-col' }, h('span', { class: 'hbar-track' }, bar)));
      }))) : h('p', { class: 'empty', text: 'No agents yet.' }));

    const evs = o.events || [];
    fill(events, evs.length ? evs.map((e) => h('li', { class: 'event ev-' + e.kind },
      h('span', { class: 'event-time' }, timeEl(e.at_ms, { relOnly: true })),
      h('span', { class: 'event-kind' }, badge(eventLabel(e), 'k-' + e.kind + (e.status ? ' s-' + String(e.status).toLowerCase() : ''))),
      h('span', { class: 'event-host' }, e.node_id && e.kind !== 'rejected' ? h('a', { href: '#/nodes/' + encodeURIComponent(e.node_id), text: e.hostname || e.node_id }) : h('span', { text: e.hostname || e.node_id || '' })),
      e.detail ? h('span', { class: 'event-detail muted', text: e.detail }) : null)) : h('li', { class: 'empty', text: 'Nothing happened yet.' }));
  }

  api('GET', '/api/v1/overview').then(render).catch(() => {});
  watch({ overview: true }, (msg) => {
    if (msg.type === 'overview') render(msg.data);
  });
  return () => {
    dead = true;
    stopTrend();
    trendPlots.forEach((p) => p.destroy());
  };
}

function eventLabel(e) {
  if (e.kind === 'status') return e.status || 'status';
  if (e.kind === 'enrolled') return 'Enrolled';
  if (e.kind === 'rejected') return 'Rejected';
  return e.kind;
}
