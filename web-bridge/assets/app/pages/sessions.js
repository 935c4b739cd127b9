// #/sessions: terminal sessions; replay links where a recording exists, kill for live ones.

import {
  api, h, fill, field, badge, timeEl, fmtBytes, fmtDuration, withQuery, poll, can, isAdmin, session, reconcile, confirmButton,
} from '../lib.js';

export function mount(main) {
  let dead = false;
  const activeOnly = h('input', { type: 'checkbox', id: 'sessions-active' });
  const limitSel = h('select', { id: 'sessions-limit' }, [50, 100, 500].map((n) => h('option', { value: String(n), text: String(n) })));
  limitSel.value = '100';
  const tbody = h('tbody');
  const table = h('table', { id: 'sessions', class: 'table' },
    h('thead', null, h('tr', null, ['Status', 'Node', 'User', 'Command', 'Started', 'Length', 'Output', 'Exit', 'From', ''].map((t) => h('th', { scope: 'col', text: t })))),
    tbody);
  main.append(
    h('div', { class: 'page-head' }, h('h1', { text: 'Terminal sessions' }), h('span', { class: 'muted small', id: 'sessions-updated' })),
    h('div', { class: 'toolbar' }, h('label', { class: 'check' }, activeOnly, ' Live only'), field('Show', limitSel)),
    h('div', { class: 'table-wrap' }, table));

  const rows = new Map();

  function row(s) {
    const sig = JSON.stringify(s);
    let r = rows.get(s.id);
    if (r && r.sig === sig) return r.tr;
    const tr = r ? r.tr : h('tr', { dataset: { sessionId: s.id } });
    const live = s.status === 'Pending' || s.status === 'Connected';
    const mine = session.me && s.user === session.me.name;
    const start = s.connected_at_ms || s.created_at_ms;
    // The actions cell survives updates of a live row (its output grows every poll), so a
    // kill being confirmed is not swept away under the pointer.
    const actionsSig = JSON.stringify([s.status, !!s.recording]);
    let actions = r && r.actionsSig === actionsSig ? r.actions : null;
    if (!actions) {
      actions = h('td', { class: 'col-actions' });
      if (s.recording && can('recordings.view') && (isAdmin() || mine)) {
        actions.appendChild(h('a', { class: 'replay btn btn-small', href: '#/sessions/' + encodeURIComponent(s.id), text: 'Replay' }));
      }
      if (live && can('tty.kill') && (isAdmin() || mine)) {
        actions.append(' ', confirmButton({
          label: 'Kill',
          cls: 'btn-small kill',
          question: 'End this session?',
          confirmLabel: 'Kill',
          onConfirm: async () => {
            await api('POST', '/api/v1/sessions/' + encodeURIComponent(s.id) + '/kill');
            await refresh();
          },
        }));
      }
    }
    const exit = s.exit ? (s.exit.exit_code != null ? 'code ' + s.exit.exit_code : s.exit.signal != null ? 'signal ' + s.exit.signal : '') : '';
    fill(tr,
      h('td', { class: 'status' }, badge(s.status)),
      h('td', null, h('a', { href: '#/nodes/' + encodeURIComponent(s.node_id), text: s.hostname || s.node_id })),
      h('td', { text: s.user }),
      h('td', { class: 'mono ellipsis', title: s.command, text: s.command }),
      h('td', null, timeEl(s.created_at_ms, { relOnly: true })),
      h('td', { text: s.closed_at_ms ? fmtDuration(s.closed_at_ms - start) : live ? 'live' : '' }),
      h('td', { class: 'num', text: fmtBytes(s.output_bytes) }),
      h('td', { class: 'ellipsis', title: s.error || '', text: exit || s.error || '' }),
      h('td', { class: 'mono small', text: s.client_addr || '' }),
      actions);
    rows.set(s.id, { tr, sig, actions, actionsSig });
    return tr;
  }

  async function refresh() {
    const list = await api('GET', withQuery('/api/v1/sessions', { active: activeOnly.checked ? 'true' : null, limit: limitSel.value }));
    if (dead) return;
    const seen = new Set(list.map((s) => s.id));
    for (const id of [...rows.keys()]) if (!seen.has(id)) rows.delete(id);
    if (list.length) reconcile(tbody, list.map(row));
    else fill(tbody, h('tr', { class: 'empty-row' }, h('td', { colspan: '10', class: 'empty', text: activeOnly.checked ? 'No live sessions.' : 'No terminal sessions yet.' })));
    document.getElementById('sessions-updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  }

  activeOnly.addEventListener('change', () => refresh().catch(() => {}));
  limitSel.addEventListener('change', () => refresh().catch(() => {}));
  const stop = poll(refresh, 5000);
  return () => {
    dead = true;
    stop();
  };
}
