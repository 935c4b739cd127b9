// #/audit (admins): the audit log, newest first, with filters and "load more".

import { api, h, fill, field, badge, timeEl, withQuery } from '../lib.js';

const PAGE = 100;

export function mount(main, ctx) {
  let dead = false;
  const q = ctx.query;
  const user = h('input', { id: 'audit-user', name: 'user', value: q.get('user') || '', autocomplete: 'off', spellcheck: 'false', placeholder: 'any' });
  const action = h('input', { id: 'audit-action', name: 'action', value: q.get('action') || '', autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. nodes or exec.run' });
  const failed = h('input', { id: 'audit-failed', name: 'failed', type: 'checkbox', checked: q.get('failed') === 'true' });
  const form = h('form', { id: 'audit-filter', class: 'toolbar' },
    field('User', user), field('Action', action), h('label', { class: 'check' }, failed, ' Failed and denied only'),
    h('button', { type: 'submit', class: 'btn', text: 'Apply' }));
  const tbody = h('tbody');
  const table = h('table', { id: 'audit', class: 'table compact' },
    h('thead', null, h('tr', null, ['#', 'Time', 'User', 'Action', 'Request', 'Resource', 'Result', 'Details', 'From'].map((t) => h('th', { scope: 'col', text: t })))),
    tbody);
  const more = h('button', { type: 'button', id: 'audit-more', class: 'btn', text: 'Load more', hidden: true });
  const status = h('span', { class: 'muted small', id: 'audit-count' });

  main.append(
    h('div', { class: 'page-head' }, h('h1', { text: 'Audit log' }), status),
    form,
    h('div', { class: 'table-wrap' }, table),
    h('div', { class: 'pager' }, more));

  let seen = new Set();
  let oldest = null;
  let count = 0;
  let gen = 0;

  function filters() {
    return { user: user.value.trim() || null, action: action.value.trim() || null, failed: failed.checked ? 'true' : null };
  }

  function row(a) {
    const e = a.entry || {};
    const details = (e.details || []).map(([k, v]) => k + '=' + v).join(' ');
    const resource = (e.resource_kind || '') + (e.resource_id ? ':' + e.resource_id : '');
    return h('tr', { dataset: { seq: String(a.seq) }, class: e.result !== 'Ok' ? 'row-failed' : '' },
      h('td', { class: 'num muted', text: String(a.seq) }),
      h('td', { class: 'nowrap' }, timeEl(e.time_ms)),
      h('td', { class: 'nowrap' }, h('span', { text: e.user || '' }), e.role ? h('span', { class: 'muted small', text: ' ' + e.role }) : null),
      h('td', { class: 'mono nowrap', text: e.action || '' }),
      h('td', { class: 'mono nowrap', text: e.request || '' }),
      h('td', { class: 'mono small ellipsis', title: resource, text: resource }),
      h('td', { class: 'nowrap' }, badge(e.result || '', 'r-' + String(e.result || '').toLowerCase())),
      h('td', { class: 'small audit-details', title: details },
        e.error ? h('div', { class: 'error-text', text: e.error }) : null,
        h('div', { class: 'ellipsis wide muted', text: details })),
      h('td', { class: 'mono small nowrap', title: e.user_agent || '', text: e.client_addr || e.source_addr || '' }));
  }

  async function load(reset) {
    const my = reset ? ++gen : gen;
    if (reset) {
      seen = new Set();
      oldest = null;
      count = 0;
      const f = filters();
      history.replaceState(null, '', '#/audit' + withQuery('', f));
    }
    const params = Object.assign(filters(), { limit: PAGE });
    if (oldest !== null) params.until_ms = oldest + 1; // records at the same ms are de-duplicated
    more.disabled = true;
    let list;
    try {
      list = await api('GET', withQuery('/api/v1/audit', params));
    } finally {
      more.disabled = false;
    }
    if (dead || my !== gen) return;
    const fresh = list.filter((a) => !seen.has(a.seq));
    if (reset) tbody.replaceChildren();
    for (const a of fresh) {
      seen.add(a.seq);
      tbody.appendChild(row(a));
    }
    count += fresh.length;
    if (list.length) oldest = Math.min(...list.map((a) => a.entry.time_ms));
    // A full page of records all at one millisecond would repeat forever: step past it.
    if (list.length === PAGE && fresh.length === 0) oldest -= 1;
    more.hidden = list.length < PAGE;
    if (count === 0) fill(tbody, h('tr', null, h('td', { colspan: '9', class: 'empty', text: 'No records match.' })));
    status.textContent = count + ' record' + (count === 1 ? '' : 's') + ' shown';
  }

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    load(true).catch(() => {});
  });
  failed.addEventListener('change', () => load(true).catch(() => {}));
  more.addEventListener('click', () => load(false).catch(() => {}));
  load(true).catch(() => {});
  return () => { dead = true; };
}
