// #/nodes: server-side search, filter, sort and paging; live (`nodes` with the current query).
// Only the page's rows are in the DOM; rows are kept by node id and updated in place. Groups
// show as a tree above the table and as a filter (a group selects every group below it).

import { api, h, fill, field, badge, timeEl, fmtInt, fmtBytes, withQuery, debounce, parseLabels, reconcile, groupOptionText } from '../lib.js';
import { watch } from '../live.js';

const SORTS = [
  // [sort key or null, header text, cell class, first order]
  ['hostname', 'Hostname', 'col-host', 'asc'],
  ['status', 'Status', 'col-status', 'asc'],
  [null, 'Address', 'col-addr'],
  [null, 'Labels', 'col-labels'],
  ['version', 'Agent', 'col-version', 'asc'],
  [null, 'CPU', 'col-cpu num'],
  [null, 'Memory', 'col-mem num'],
  [null, 'Load', 'col-load num'],
  ['last_seen', 'Last seen', 'col-seen', 'desc'],
  ['created', 'Added', 'col-created', 'desc'],
];

const STATUSES = ['online', 'offline', 'maintenance'];

/** The page's state from the address's query. */
function stateFrom(q0) {
  return {
    q: q0.get('q') || '',
    status: STATUSES.includes(q0.get('status')) ? q0.get('status') : '',
    label: q0.get('label') || '',
    group: q0.get('group') || '',
    sort: SORTS.some((s) => s[0] && s[0] === q0.get('sort')) ? q0.get('sort') : 'hostname',
    order: q0.get('order') === 'desc' ? 'desc' : 'asc',
    offset: Math.max(0, parseInt(q0.get('offset') || '0', 10) || 0),
    limit: [25, 50, 100, 200].includes(parseInt(q0.get('limit'), 10)) ? parseInt(q0.get('limit'), 10) : 50,
  };
}

/** What `GET /api/v1/nodes` is asked for a state. */
function paramsOf(state) {
  return {
    q: state.q,
    status: state.status || null,
    label: state.label || null,
    group: state.group || null,
    sort: state.sort,
    order: state.order,
    offset: state.offset,
    limit: state.limit,
  };
}

/** A first page asked for while the app was still loading who the user is (see `prefetch`). */
let early = null;

/**
 * Asks for the first page of a fresh load at once, beside `/api/v1/me`, instead of after it:
 * the app calls it before mounting. The page takes the answer if it asks for the same.
 */
export function prefetch(query) {
  const url = withQuery('/api/v1/nodes', paramsOf(stateFrom(query)));
  const answer = api('GET', url);
  answer.catch(() => {}); // a login page follows a 401; the page, if mounted, sees the error
  early = { url, answer };
}

export function mount(main, ctx) {
  let dead = false;
  const state = stateFrom(ctx.query);
  let total = null;
  let seq = 0;
  const rows = new Map();

  // Toolbar
  const search = h('input', { id: 'node-search', type: 'search', placeholder: 'Hostname, id, label or address', value: state.q, autocomplete: 'off', spellcheck: 'false' });
  const statusSel = h('select', { id: 'node-status-filter' },
    h('option', { value: '', text: 'Any status' }),
    STATUSES.map((s) => h('option', { value: s, text: s[0].toUpperCase() + s.slice(1), selected: state.status === s })));
  statusSel.value = state.status;
  const labelInput = h('input', { id: 'node-label-filter', type: 'text', placeholder: 'key=value', value: state.label, autocomplete: 'off', spellcheck: 'false' });
  const labelHint = h('span', { class: 'field-error', hidden: true });
  const groupSel = h('select', { id: 'node-group-filter' }, h('option', { value: '', text: 'Any group' }));
  const groupTree = h('nav', { id: 'group-tree', class: 'group-tree', 'aria-label': 'Groups', hidden: true });
  const limitSel = h('select', { id: 'node-page-size' }, [25, 50, 100, 200].map((n) => h('option', { value: String(n), text: String(n) })));
  limitSel.value = String(state.limit);

  const first = h('button', { type: 'button', class: 'btn btn-small', id: 'page-first', text: '\u00AB First', 'aria-label': 'First page' });
  const prev = h('button', { type: 'button', class: 'btn btn-small', id: 'page-prev', text: '\u2039 Prev', 'aria-label': 'Previous page' });
  const next = h('button', { type: 'button', class: 'btn btn-small', id: 'page-next', text: 'Next \u203A', 'aria-label': 'Next page' });
  const last = h('button', { type: 'button', class: 'btn btn-small', id: 'page-last', text: 'Last \u00BB', 'aria-label': 'Last page' });
  const info = h('span', { id: 'page-info', class: 'page-info', 'aria-live': 'polite', text: 'Loading\u2026' });

  const headRow = h('tr');
  const tbody = h('tbody');
  const table = h('table', { id: 'nodes', class: 'table nodes-table' }, h('thead', null, headRow), tbody);

  main.append(
    h('div', { class: 'page-head' }, h('h1', { text: 'Nodes' }), h('span', { class: 'muted small', id: 'nodes-updated' })),
    h('div', { class: 'toolbar' },
      field('Search', search, 'grow'),
      field('Status', statusSel),
      field('Label', h('span', { class: 'stack' }, labelInput, labelHint)),
      field('Group', groupSel),
      field('Per page', limitSel)),
    groupTree,
    h('div', { class: 'pager' }, info, h('span', { class: 'pager-buttons' }, first, prev, next, last)),
    h('div', { class: 'table-wrap' }, table));

  function renderHead() {
    fill(headRow, SORTS.map(([key, text, cls, firstOrder]) => {
      if (!key) return h('th', { class: cls, scope: 'col', text });
      const active = state.sort === key;
      const th = h('th', { class: cls + ' sortable' + (active ? ' sorted' : ''), scope: 'col', 'aria-sort': active ? (state.order === 'asc' ? 'ascending' : 'descending') : 'none' },
        h('button', { type: 'button', class: 'sort-btn', dataset: { sort: key }, title: 'Sort by ' + text.toLowerCase() },
          text, h('span', { class: 'sort-ind', 'aria-hidden': 'true', text: active ? (state.order === 'asc' ? ' \u25B2' : ' \u25BC') : '' })));
      th.querySelector('button').addEventListener('click', () => {
        if (state.sort === key) state.order = state.order === 'asc' ? 'desc' : 'asc';
        else {
          state.sort = key;
          state.order = firstOrder;
        }
        state.offset = 0;
        renderHead();
        reload();
      });
      return th;
    }));
  }

  function params() {
    return paramsOf(state);
  }

  function saveHash() {
    const p = params();
    const qs = withQuery('', { q: p.q, status: p.status, label: p.label, group: p.group, sort: p.sort !== 'hostname' ? p.sort : null, order: p.order !== 'asc' ? p.order : null, offset: p.offset || null, limit: p.limit !== 50 ? p.limit : null });
    history.replaceState(null, '', '#/nodes' + qs);
  }

  async function reload() {
    if (dead) return;
    const my = ++seq;
    saveHash();
    const p = params();
    const url = withQuery('/api/v1/nodes', p);
    const answer = early && early.url === url ? early.answer : api('GET', url);
    early = null;
    try {
      const res = await answer;
      if (my === seq && !dead) render(res);
    } catch (_) {
      if (my === seq && !dead && total === null) info.textContent = 'Could not load nodes';
    }
    // Live updates once the first rows are in: the socket's first frame is the same page, and
    // core need not make it twice at once.
    if (my === seq && !dead) watch({ nodes: p }, onLive);
  }

  function onLive(msg) {
    if (msg.type !== 'nodes' || dead) return;
    const d = msg.data;
    if (!d || d.offset !== state.offset || d.limit !== state.limit) return;
    render(d);
  }

  function render(res) {
    total = res.total || 0;
    const nodes = res.nodes || [];
    // The page fell off the end (nodes went away): go to the last page.
    if (nodes.length === 0 && total > 0 && state.offset >= total) {
      state.offset = Math.max(0, Math.floor((total - 1) / state.limit) * state.limit);
      reload();
      return;
    }
    const seen = new Set();
    const ordered = [];
    for (const n of nodes) {
      seen.add(n.id);
      let tr = rows.get(n.id);
      if (!tr) {
        tr = h('tr', { dataset: { nodeId: n.id } });
        rows.set(n.id, tr);
      }
      updateRow(tr, n);
      ordered.push(tr);
    }
    for (const id of [...rows.keys()]) if (!seen.has(id)) rows.delete(id);
    if (ordered.length === 0) {
      fill(tbody, h('tr', { class: 'empty-row' }, h('td', { colspan: String(SORTS.length), class: 'empty', text: state.q || state.status || state.label || state.group ? 'No nodes match.' : 'No nodes yet. Approve enrollment applications to add nodes.' })));
    } else {
      reconcile(tbody, ordered);
    }
    const from = nodes.length ? state.offset + 1 : 0;
    const to = state.offset + nodes.length;
    info.textContent = total === 0 ? '0 of 0' : fmtInt(from) + '\u2013' + fmtInt(to) + ' of ' + fmtInt(total);
    prev.disabled = first.disabled = state.offset === 0;
    next.disabled = last.disabled = state.offset + state.limit >= total;
    document.getElementById('nodes-updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  }

  renderHead();

  const typed = debounce(() => {
    state.q = search.value.trim();
    state.offset = 0;
    reload();
  }, 250);
  search.addEventListener('input', typed);
  search.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      typed.cancel();
      state.q = search.value.trim();
      state.offset = 0;
      reload();
    }
  });
  statusSel.addEventListener('change', () => {
    state.status = statusSel.value;
    state.offset = 0;
    reload();
  });
  const labelTyped = debounce(() => {
    const v = labelInput.value.trim();
    if (v && !/^[^=\s]+=.*$/.test(v)) {
      labelHint.textContent = 'Use key=value';
      labelHint.hidden = false;
      return;
    }
    try {
      if (v) parseLabels(v);
    } catch (e) {
      labelHint.textContent = e.message;
      labelHint.hidden = false;
      return;
    }
    labelHint.hidden = true;
    state.label = v;
    state.offset = 0;
    reload();
  }, 250);
  labelInput.addEventListener('input', labelTyped);
  function chooseGroup(name) {
    state.group = name;
    groupSel.value = name;
    state.offset = 0;
    renderTree();
    reload();
  }
  groupSel.addEventListener('change', () => chooseGroup(groupSel.value));

  // The tree: each group with its nodes (with those below); choosing one filters the table.
  let groups = [];
  function renderTree() {
    groupTree.hidden = groups.length === 0;
    if (!groups.length) return;
    const roots = [];
    const byName = new Map();
    for (const g of groups) {
      const item = h('li', { dataset: { group: g.name } },
        h('button', { type: 'button', class: 'group-btn' + (state.group === g.name ? ' active' : ''), 'aria-pressed': String(state.group === g.name), title: g.description || g.path },
          g.name, h('span', { class: 'group-count muted', text: ' ' + fmtInt(g.nodes_total) })));
      item.querySelector('button').addEventListener('click', () => chooseGroup(state.group === g.name ? '' : g.name));
      byName.set(g.name, item);
      const parent = g.parent && byName.get(g.parent);
      if (parent) {
        let list = parent.querySelector(':scope > ul');
        if (!list) parent.append(list = h('ul'));
        list.append(item);
      } else {
        roots.push(item);
      }
    }
    fill(groupTree,
      h('span', { class: 'group-tree-title muted small', text: 'Groups' }),
      h('ul', { class: 'group-roots' }, roots),
      state.group ? h('button', { type: 'button', class: 'btn btn-small', id: 'group-clear', text: 'All nodes', on: { click: () => chooseGroup('') } }) : null);
  }
  api('GET', '/api/v1/groups').then((list) => {
    if (dead) return;
    groups = Array.isArray(list) ? list : [];
    fill(groupSel, h('option', { value: '', text: 'Any group' }),
      groups.map((g) => h('option', { value: g.name, text: groupOptionText(g) })));
    // A group named in the address that no longer exists still shows, so the filter says why
    // the table is empty.
    if (state.group && !groups.some((g) => g.name === state.group)) {
      groupSel.append(h('option', { value: state.group, text: state.group + ' (unknown)' }));
    }
    groupSel.value = state.group;
    renderTree();
  }).catch(() => {});

  limitSel.addEventListener('change', () => {
    state.limit = parseInt(limitSel.value, 10);
    state.offset = 0;
    reload();
  });
  first.addEventListener('click', () => { state.offset = 0; reload(); });
  prev.addEventListener('click', () => { state.offset = Math.max(0, state.offset - state.limit); reload(); });
  next.addEventListener('click', () => { if (total === null || state.offset + state.limit < total) { state.offset += state.limit; reload(); } });
  last.addEventListener('click', () => { if (total) { state.offset = Math.max(0, Math.floor((total - 1) / state.limit) * state.limit); reload(); } });

  reload();
  return () => {
    dead = true;
    typed.cancel();
    labelTyped.cancel();
  };
}

function updateRow(tr, n) {
  const m = n.metrics || null;
  const sig = JSON.stringify([n.hostname, n.status, n.connected, n.public_addr, n.labels, n.agent_version, n.last_seen_ms, n.created_at_ms, n.metrics_at_ms, n.conflict ? 1 : 0, n.clock_skew_ms, n.group]);
  if (tr._sig === sig) return;
  tr._sig = sig;
  tr.classList.toggle('row-offline', n.status === 'Offline');

  const labels = Object.entries(n.labels || {});
  const shown = labels.slice(0, 4);
  const memPct = m && m.memory_total ? 100 * m.memory_used / m.memory_total : null;

  fill(tr,
    h('td', { class: 'col-host' },
      h('a', { class: 'node-link', href: '#/nodes/' + encodeURIComponent(n.id), text: n.hostname || n.id }),
      n.conflict ? h('span', { class: 'warn-icon', title: 'Another machine tried to use this identity', text: ' \u26A0' }) : null,
      h('div', { class: 'sub mono', title: n.id, text: n.id.slice(0, 8) + (n.group ? ' \u00B7 ' + n.group : '') })),
    h('td', { class: 'status col-status' }, badge(n.status)),
    h('td', { class: 'col-addr mono', text: n.public_addr || '' }),
    h('td', { class: 'col-labels' }, shown.map(([k, v]) => h('span', { class: 'chip', text: k + '=' + v })),
      labels.length > shown.length ? h('span', { class: 'muted small', text: ' +' + (labels.length - shown.length) }) : null),
    h('td', { class: 'col-version mono', text: n.agent_version || '' }),
    h('td', { class: 'col-cpu num' }, m ? meter(m.cpu_percent) : null),
    h('td', { class: 'col-mem num', title: m ? fmtBytes(m.memory_used) + ' of ' + fmtBytes(m.memory_total) : '' }, memPct !== null ? meter(memPct) : null),
    h('td', { class: 'col-load num', text: m ? Number(m.load1).toFixed(2) : '' }),
    h('td', { class: 'col-seen' }, n.connected ? h('span', { class: 'muted', text: 'connected' }) : timeEl(n.last_seen_ms, { relOnly: true, none: 'never' })),
    h('td', { class: 'col-created' }, timeEl(n.created_at_ms, { relOnly: true })));
}

function meter(pct) {
  const v = Math.max(0, Math.min(100, Number(pct) || 0));
  const bar = h('span', { class: 'meter-fill' + (v >= 90 ? ' hot' : v >= 70 ? ' warm' : '') });
  bar.style.width = v + '%';
  return h('span', { class: 'meter' }, h('span', { class: 'meter-text', text: v.toFixed(0) + '%' }), h('span', { class: 'meter-track' }, bar));
}
