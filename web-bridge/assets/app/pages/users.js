// #/users (admins): list, add (a generated password is shown once), role, enable/disable,
// log out sessions, delete.

import { api, h, fill, card, field, badge, timeEl, confirmButton, session } from '../lib.js';

const ROLES = ['Admin', 'Operator', 'Viewer'];

export function mount(main) {
  let dead = false;
  const tbody = h('tbody');
  const table = h('table', { id: 'users', class: 'table' },
    h('thead', null, h('tr', null, ['Name', 'Email', 'Role', 'State', 'Password', 'Certificates', 'Sessions', 'Last login', 'Created', ''].map((t) => h('th', { scope: 'col', text: t })))),
    tbody);

  // Add form
  const name = h('input', { id: 'user-name', name: 'name', required: true, autocomplete: 'off', spellcheck: 'false', pattern: '[A-Za-z0-9_\\-][A-Za-z0-9_.\\-]{0,63}' });
  const email = h('input', { id: 'user-email', name: 'email', type: 'email', autocomplete: 'off' });
  const role = h('select', { id: 'user-role', name: 'role' }, ROLES.map((r) => h('option', { value: r, text: r })));
  role.value = 'Viewer';
  const password = h('input', { id: 'user-password', name: 'password', type: 'password', autocomplete: 'new-password', minlength: '12' });
  const generate = h('input', { id: 'user-generate', name: 'generate', type: 'checkbox', checked: true });
  const formError = h('p', { class: 'form-error', id: 'user-form-error', role: 'alert', hidden: true });
  const generated = h('div', { id: 'generated-password', class: 'notice', hidden: true });
  const form = h('form', { id: 'user-add', class: 'form-row wrap', novalidate: true },
    field('Name', name),
    field('Email (optional)', email),
    field('Role', role),
    h('label', { class: 'check' }, generate, ' Generate a password'),
    field('Password (12+ characters)', password),
    h('button', { type: 'submit', class: 'btn primary', text: 'Add user' }));
  const syncPw = () => {
    password.disabled = generate.checked;
    if (generate.checked) password.value = '';
  };
  generate.addEventListener('change', syncPw);
  syncPw();

  main.append(
    h('div', { class: 'page-head' }, h('h1', { text: 'Users' })),
    card('Add a user', form, formError, generated),
    card(null, h('div', { class: 'table-wrap' }, table)));

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    formError.hidden = true;
    generated.hidden = true;
    const n = name.value.trim();
    if (!n) {
      formError.textContent = 'Enter a name.';
      formError.hidden = false;
      return;
    }
    if (!generate.checked && password.value.length < 12) {
      formError.textContent = 'A password has at least 12 characters (or let one be generated).';
      formError.hidden = false;
      return;
    }
    const body = { name: n, role: role.value };
    if (email.value.trim()) body.email = email.value.trim();
    if (!generate.checked) body.password = password.value;
    try {
      const res = await api('POST', '/api/v1/users', body);
      name.value = '';
      email.value = '';
      password.value = '';
      if (res && res.password) showGenerated(res.user.name, res.password);
      await refresh();
    } catch (e) {
      formError.textContent = e.message;
      formError.hidden = false;
    }
  });

  // A generated password, shown once with a copy button.
  function showGenerated(user, password) {
    const pw = h('code', { class: 'secret', id: 'generated-password-value', text: password });
    const copy = h('button', { type: 'button', class: 'btn btn-small', text: 'Copy' });
    copy.addEventListener('click', async () => {
      try {
        await navigator.clipboard.writeText(password);
        copy.textContent = 'Copied';
      } catch (_) {
        const r = document.createRange();
        r.selectNodeContents(pw);
        const sel = getSelection();
        sel.removeAllRanges();
        sel.addRange(r);
        copy.textContent = 'Selected: press Ctrl+C';
      }
    });
    const dismiss = h('button', { type: 'button', class: 'btn btn-small', text: 'Done' });
    dismiss.addEventListener('click', () => { fill(generated); generated.hidden = true; });
    fill(generated, h('strong', { text: 'Password for ' + user + ': ' }), pw, ' ', copy, ' ', dismiss,
      h('div', { class: 'muted small', text: 'It is shown only now. Hand it over safely; the user can change it.' }));
    generated.hidden = false;
    generated.scrollIntoView({ block: 'nearest' });
  }

  function row(u) {
    const self = session.me && u.name === session.me.name;
    const roleSel = h('select', { class: 'role', 'aria-label': 'Role of ' + u.name }, ROLES.map((r) => h('option', { value: r, text: r })));
    roleSel.value = u.role;
    roleSel.addEventListener('change', async () => {
      roleSel.disabled = true;
      try {
        await api('POST', '/api/v1/users/' + encodeURIComponent(u.name) + '/role', { role: roleSel.value });
      } catch (_) {
        roleSel.value = u.role;
      } finally {
        roleSel.disabled = false;
      }
      refresh().catch(() => {});
    });
    const toggle = h('button', { type: 'button', class: 'btn btn-small toggle-enabled', text: u.enabled ? 'Disable' : 'Enable' });
    toggle.addEventListener('click', async () => {
      toggle.disabled = true;
      try {
        await api('POST', '/api/v1/users/' + encodeURIComponent(u.name) + '/enabled', { enabled: !u.enabled });
        await refresh();
      } catch (_) { /* shown */ } finally { toggle.disabled = false; }
    });
    const logout = h('button', { type: 'button', class: 'btn btn-small logout-sessions', text: 'Log out sessions', disabled: !u.sessions });
    logout.addEventListener('click', async () => {
      logout.disabled = true;
      try {
        const r = await api('POST', '/api/v1/users/' + encodeURIComponent(u.name) + '/logout');
        logout.textContent = 'Ended ' + (r && r.sessions != null ? r.sessions : 0);
        await refresh();
      } catch (_) { logout.disabled = false; }
    });
    const del = confirmButton({
      label: 'Delete', cls: 'btn-small delete-user', question: 'Delete ' + u.name + '?', confirmLabel: 'Delete',
      onConfirm: async () => {
        await api('DELETE', '/api/v1/users/' + encodeURIComponent(u.name));
        await refresh();
      },
    });
    // Another user's password: a new one is generated and shown once (their sessions end).
    // One's own is changed on the account page, where the current one is asked.
    const reset = self ? h('a', { class: 'btn btn-small', href: '#/account', text: 'Change password' }) : confirmButton({
      label: 'Reset password', cls: 'btn-small reset-password', question: 'New password for ' + u.name + '?', confirmLabel: 'Reset',
      onConfirm: async () => {
        const r = await api('POST', '/api/v1/users/' + encodeURIComponent(u.name) + '/password', {});
        if (r && r.password) showGenerated(u.name, r.password);
        await refresh();
      },
    });
    // A bridge is a service with a certificate, managed with the CLI; the web reaches core
    // through one, and core refuses changes to that one from a page anyway.
    const service = u.role === 'Bridge';
    return h('tr', { dataset: { user: u.name }, class: u.enabled ? '' : 'row-disabled' },
      h('td', null, h('strong', { text: u.name }), self ? h('span', { class: 'muted small', text: ' (you)' }) : null),
      h('td', { text: u.email || '' }),
      h('td', null, service ? h('span', { class: 'muted', title: 'a service; manage it with the tether CLI', text: 'Bridge (service)' }) : roleSel),
      h('td', null, badge(u.enabled ? 'enabled' : 'disabled', u.enabled ? 's-online' : 's-offline')),
      h('td', { text: u.has_password ? 'set' : 'certificate only' }),
      h('td', { class: 'num', text: String(u.active_certs ?? '') }),
      h('td', { class: 'num', text: String(u.sessions ?? '') }),
      h('td', { title: u.last_login_addr || '' }, timeEl(u.last_login_ms, { relOnly: true, none: 'never' })),
      h('td', null, timeEl(u.created_at_ms, { relOnly: true })),
      h('td', { class: 'col-actions' }, service ? null : h('div', { class: 'actions-wrap' }, toggle, logout, reset, del)));
  }

  async function refresh() {
    const list = await api('GET', '/api/v1/users');
    if (dead) return;
    list.sort((a, b) => a.name.localeCompare(b.name));
    fill(tbody, list.length ? list.map(row) : h('tr', null, h('td', { colspan: '10', class: 'empty', text: 'No users.' })));
  }

  refresh().catch(() => {});
  return () => { dead = true; };
}
