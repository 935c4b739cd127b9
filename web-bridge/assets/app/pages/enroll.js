// #/enroll: pending applications (approve / reject with a reason), decided ones below.
// Refreshed every 3 s while the tab is visible, and right after a decision.

import { api, h, fill, card, badge, timeEl, withQuery, poll, can, shortId, reconcile } from '../lib.js';

const DECIDED_SHOWN = 100;

export function mount(main) {
  let dead = false;
  const decide = can('enroll.decide');
  const rows = new Map(); // application id -> {tr, cells, formOpen}
  const pendingBody = h('tbody');
  const pendingTable = h('table', { id: 'applications', class: 'table' },
    h('thead', null, h('tr', null,
      ['Hostname', 'Node id', 'Key fingerprint (SHA-256)', 'From', 'Received'].map((t) => h('th', { scope: 'col', text: t })),
      decide ? h('th', { scope: 'col', class: 'col-actions', text: 'Decision' }) : null)),
    pendingBody);
  const pendingCount = h('span', { class: 'count', id: 'pending-count' });
  const decidedBody = h('tbody');
  const decidedTable = h('table', { id: 'applications-decided', class: 'table compact' },
    h('thead', null, h('tr', null, ['Decision', 'Hostname', 'Node id', 'Decided', 'By', 'Reason', 'Received'].map((t) => h('th', { scope: 'col', text: t })))),
    decidedBody);
  const decidedNote = h('p', { class: 'muted small' });

  main.append(
    h('div', { class: 'page-head' }, h('h1', { text: 'Enrollment' }), h('span', { class: 'muted small', id: 'enroll-updated' })),
    card(null, h('h2', { class: 'card-title' }, 'Pending applications ', pendingCount),
      h('p', { class: 'muted small', text: 'Compare the key fingerprint with the one in the node\u2019s log before approving.' }),
      h('div', { class: 'table-wrap' }, pendingTable)),
    card('Decided', h('div', { class: 'table-wrap' }, decidedTable), decidedNote));

  function pendingRow(a) {
    let r = rows.get(a.id);
    if (!r) {
      const tr = h('tr', { dataset: { applicationId: a.id } });
      const cells = {
        host: h('td', { class: 'col-host' }),
        node: h('td', { class: 'mono small' }),
        fp: h('td', { class: 'mono small fingerprint' }),
        from: h('td', { class: 'mono' }),
        at: h('td'),
      };
      tr.append(cells.host, cells.node, cells.fp, cells.from, cells.at);
      if (decide) {
        const approve = h('button', { type: 'button', class: 'btn primary btn-small approve', text: 'Approve' });
        const reject = h('button', { type: 'button', class: 'btn danger btn-small reject', text: 'Reject' });
        const reason = h('input', { name: 'reason', class: 'reject-reason', placeholder: 'Reason (the node is told)', 'aria-label': 'Reason for rejecting ' + a.hostname, autocomplete: 'off', required: true, maxlength: '500' });
        const form = h('form', { class: 'reject-form inline-form', hidden: true, novalidate: true },
          reason,
          h('button', { type: 'submit', class: 'btn danger btn-small reject-confirm', text: 'Reject' }),
          h('button', { type: 'button', class: 'btn btn-small reject-cancel', text: 'Cancel' }));
        const buttons = h('span', { class: 'decision-buttons' }, approve, ' ', reject);
        const td = h('td', { class: 'col-actions' }, buttons, form);
        tr.appendChild(td);
        approve.addEventListener('click', async () => {
          approve.disabled = reject.disabled = true;
          try {
            await api('POST', '/api/v1/applications/' + encodeURIComponent(a.id) + '/approve');
            await refresh(true);
          } catch (_) { /* shown */ } finally { approve.disabled = reject.disabled = false; }
        });
        reject.addEventListener('click', () => {
          buttons.hidden = true;
          form.hidden = false;
          r.formOpen = true;
          reason.focus();
        });
        form.querySelector('.reject-cancel').addEventListener('click', () => {
          form.hidden = true;
          buttons.hidden = false;
          r.formOpen = false;
        });
        form.addEventListener('submit', async (ev) => {
          ev.preventDefault();
          if (!reason.value.trim()) {
            reason.classList.add('invalid');
            reason.placeholder = 'A reason is required';
            reason.focus();
            return;
          }
          reason.classList.remove('invalid');
          const submit = form.querySelector('.reject-confirm');
          submit.disabled = true;
          try {
            await api('POST', '/api/v1/applications/' + encodeURIComponent(a.id) + '/reject', { reason: reason.value.trim() });
            r.formOpen = false;
            await refresh(true);
          } catch (_) { /* shown */ } finally { submit.disabled = false; }
        });
      }
      r = { tr, cells, formOpen: false };
      rows.set(a.id, r);
    }
    const c = r.cells;
    c.host.textContent = a.hostname;
    c.node.textContent = a.node_id;
    c.fp.textContent = a.key_fingerprint;
    c.fp.title = a.key_fingerprint;
    c.from.textContent = a.remote_addr || '';
    fill(c.at, timeEl(a.created_at_ms, { relOnly: true }));
    return r.tr;
  }

  let lastDecided = 0;
  async function refresh(withDecided) {
    const pending = await api('GET', withQuery('/api/v1/applications', { status: 'pending' }));
    if (dead) return;
    pending.sort((a, b) => a.created_at_ms - b.created_at_ms);
    const seen = new Set(pending.map((a) => a.id));
    for (const id of [...rows.keys()]) if (!seen.has(id)) rows.delete(id);
    if (pending.length) reconcile(pendingBody, pending.map(pendingRow));
    else fill(pendingBody, h('tr', { class: 'empty-row' }, h('td', { colspan: decide ? '6' : '5', class: 'empty', text: 'No pending applications.' })));
    pendingCount.textContent = String(pending.length);
    document.getElementById('enroll-updated').textContent = 'updated ' + new Date().toLocaleTimeString();

    // Decided ones change only by decisions: every 30 s, or now after a decision.
    if (withDecided || Date.now() - lastDecided > 30000) {
      lastDecided = Date.now();
      const [approved, rejected] = await Promise.all([
        // Newest first, cut by core: a large fleet has as many decided applications as nodes.
        api('GET', withQuery('/api/v1/applications', { status: 'approved', limit: DECIDED_SHOWN })),
        api('GET', withQuery('/api/v1/applications', { status: 'rejected', limit: DECIDED_SHOWN })),
      ]);
      if (dead) return;
      const all = approved.concat(rejected).sort((a, b) => (b.decided_at_ms || b.created_at_ms) - (a.decided_at_ms || a.created_at_ms));
      const shown = all.slice(0, DECIDED_SHOWN);
      fill(decidedBody, shown.length ? shown.map((a) => h('tr', { dataset: { decidedId: a.id } },
        h('td', null, badge(a.status)),
        h('td', null, a.status === 'Approved' ? h('a', { href: '#/nodes/' + encodeURIComponent(a.node_id), text: a.hostname }) : h('span', { text: a.hostname })),
        h('td', { class: 'mono small', title: a.node_id, text: shortId(a.node_id) }),
        h('td', null, timeEl(a.decided_at_ms, { relOnly: true })),
        h('td', { text: a.decided_by || '' }),
        h('td', { text: a.reason || '' }),
        h('td', null, timeEl(a.created_at_ms, { relOnly: true }))))
        : h('tr', { class: 'empty-row' }, h('td', { colspan: '7', class: 'empty', text: 'No decisions yet.' })));
      decidedNote.textContent = all.length > DECIDED_SHOWN ? 'The newest ' + DECIDED_SHOWN + ' of ' + all.length + ' decisions.' : '';
    }
  }

  const stop = poll(() => refresh(false), 3000);
  return () => {
    dead = true;
    stop();
  };
}
