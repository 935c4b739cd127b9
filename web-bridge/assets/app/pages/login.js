// #/login: name and password; after login, the dashboard.

import { api, h, field, setMe, clearError } from '../lib.js';
import { changedNotice } from './account.js';

export function mount(main, ctx) {
  main.classList.add('main-center');
  const username = h('input', { name: 'username', id: 'login-username', autocomplete: 'username', required: true, autofocus: true, spellcheck: 'false', autocapitalize: 'off' });
  const password = h('input', { name: 'password', id: 'login-password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit', class: 'btn primary wide', text: 'Log in' });
  const error = h('p', { id: 'login-error', class: 'form-error', role: 'alert', hidden: true });
  const notice = changedNotice.text ? h('p', { id: 'login-notice', class: 'notice', role: 'status', text: changedNotice.text }) : null;
  changedNotice.text = null;
  const form = h('form', { id: 'login', class: 'login-form', novalidate: true },
    notice,
    field('User name', username),
    field('Password', password),
    error,
    submit);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    error.textContent = '';
    if (!username.value.trim() || !password.value) {
      error.textContent = 'Enter your user name and password.';
      error.hidden = false;
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Logging in\u2026';
    try {
      const res = await api('POST', '/api/v1/auth/login', { username: username.value.trim(), password: password.value }, { quiet: true, noRedirect: true });
      setMe(res.user.name, res.user.role, res.permissions);
      clearError();
      password.value = '';
      if (ctx.onLogin) ctx.onLogin();
      ctx.navigate(ctx.landing ? ctx.landing() : '#/');
    } catch (e) {
      error.textContent = e.message || 'Login failed';
      error.hidden = false;
      password.select();
    } finally {
      submit.disabled = false;
      submit.textContent = 'Log in';
    }
  });

  main.appendChild(h('div', { class: 'login-box' },
    h('div', { class: 'login-brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true', text: '\u25C6' }), ' Tether'),
    h('h1', { class: 'login-title', text: 'Log in' }),
    form,
    h('p', { class: 'muted small', text: 'Fleet management \u2014 every request is audited.' })));
  setTimeout(() => username.focus(), 0);
  return () => {};
}
