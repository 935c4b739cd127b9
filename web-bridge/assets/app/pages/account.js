// #/account: who you are, and changing your own password (the current one is asked: a session
// left open on someone else's screen must not be enough to take the account over).

import { api, h, card, facts, field, session, unauthenticated } from '../lib.js';

/** What the login page says after a password change ended the session. */
export const changedNotice = { text: null };

export function mount(main) {
  const me = session.me;
  const current = h('input', { id: 'account-current', type: 'password', autocomplete: 'current-password', required: true });
  const next = h('input', { id: 'account-new', type: 'password', autocomplete: 'new-password', minlength: '12', required: true });
  const again = h('input', { id: 'account-again', type: 'password', autocomplete: 'new-password', minlength: '12', required: true });
  const submit = h('button', { type: 'submit', class: 'btn primary', text: 'Change password' });
  const error = h('p', { id: 'account-error', class: 'form-error', role: 'alert', hidden: true });
  const form = h('form', { id: 'account-password', class: 'form-col', novalidate: true },
    field('Current password', current),
    field('New password (12+ characters)', next),
    field('New password again', again),
    error,
    h('div', null, submit));

  const fail = (text) => {
    error.textContent = text;
    error.hidden = false;
  };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    if (!current.value) return fail('Enter your current password.');
    if (next.value.length < 12) return fail('A password has at least 12 characters.');
    if (next.value !== again.value) return fail('The two new passwords differ.');
    submit.disabled = true;
    try {
      await api('POST', '/api/v1/users/' + encodeURIComponent(me.name) + '/password',
        { password: next.value, current: current.value }, { quiet: true, noRedirect: true });
      // Core ended every session of this user, this one too.
      changedNotice.text = 'Your password was changed and your sessions ended: log in with the new one.';
      unauthenticated();
    } catch (e) {
      fail(e.message || 'The password was not changed.');
      current.select();
    } finally {
      submit.disabled = false;
      current.value = '';
      next.value = '';
      again.value = '';
    }
  });

  main.append(
    h('div', { class: 'page-head' }, h('h1', { text: 'Your account' })),
    card(null, facts([['User', me.name], ['Role', me.role]])),
    card('Change your password',
      h('p', { class: 'muted small', text: 'Your login sessions end, in this browser and every other; log in again afterwards. Certificates are not affected.' }),
      form));
  return () => {};
}
