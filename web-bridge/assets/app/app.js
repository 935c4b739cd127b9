// Tether's single-page app: the router, the header and the session.
//
// Each page module exports `mount(main, ctx)` which builds the page into `main` and answers a
// cleanup function (called when the user leaves the page). `ctx`: {params, query, navigate}.

import {
  session, can, setMe, api, h, fill, clearError, showError, onUnauthenticated, checkHealth,
} from './lib.js';
import { startLive, stopLive, watch } from './live.js';
import * as loginPage from './pages/login.js';
import * as dashboardPage from './pages/dashboard.js';
import * as nodesPage from './pages/nodes.js';
import * as nodePage from './pages/node.js';
import * as enrollPage from './pages/enroll.js';
import * as commandsPage from './pages/commands.js';
import * as commandPage from './pages/command.js';
import * as terminalPage from './pages/terminal.js';
import * as sessionsPage from './pages/sessions.js';
import * as replayPage from './pages/replay.js';
import * as usersPage from './pages/users.js';
import * as auditPage from './pages/audit.js';
import * as accountPage from './pages/account.js';
import * as alertsPage from './pages/alerts.js';
import * as tasksPage from './pages/tasks.js';
import * as taskPage from './pages/task.js';
import * as releasesPage from './pages/releases.js';
import * as deployPage from './pages/deploy.js';

// [pattern, page, title, permission needed (any of), nav key]
const routes = [
  [/^\/$/, dashboardPage, 'Dashboard', null, 'dashboard'],
  [/^\/nodes$/, nodesPage, 'Nodes', ['nodes.view'], 'nodes'],
  [/^\/nodes\/([^/]+)$/, nodePage, 'Node', ['nodes.view'], 'nodes'],
  [/^\/enroll$/, enrollPage, 'Enrollment', ['enroll.view'], 'enroll'],
  [/^\/commands$/, commandsPage, 'Commands', ['exec.view', 'exec.run'], 'commands'],
  [/^\/commands\/([^/]+)$/, commandPage, 'Command', ['exec.view'], 'commands'],
  [/^\/terminal\/([^/]+)$/, terminalPage, 'Terminal', ['tty.open'], 'nodes'],
  [/^\/sessions$/, sessionsPage, 'Sessions', ['tty.view'], 'sessions'],
  [/^\/sessions\/([^/]+)$/, replayPage, 'Replay', ['recordings.view', 'tty.view'], 'sessions'],
  [/^\/users$/, usersPage, 'Users', ['users.manage'], 'users'],
  [/^\/audit$/, auditPage, 'Audit', ['audit.view'], 'audit'],
  [/^\/alerts$/, alertsPage, 'Alerts', ['alerts.view'], 'alerts'],
  [/^\/tasks$/, tasksPage, 'Tasks', ['tasks.view'], 'tasks'],
  [/^\/tasks\/([^/]+)$/, taskPage, 'Task', ['tasks.view'], 'tasks'],
  [/^\/releases$/, releasesPage, 'Releases', ['versions.view'], 'releases'],
  [/^\/deploys\/(\d+)$/, deployPage, 'Deploy', ['versions.view'], 'releases'],
  [/^\/account$/, accountPage, 'Your account', null, null],
];

// [nav key, text, href, permission needed (any of)]
const navItems = [
  ['dashboard', 'Dashboard', '#/', null],
  ['nodes', 'Nodes', '#/nodes', ['nodes.view']],
  ['enroll', 'Enrollment', '#/enroll', ['enroll.view']],
  ['commands', 'Commands', '#/commands', ['exec.view', 'exec.run']],
  ['sessions', 'Sessions', '#/sessions', ['tty.view']],
  ['alerts', 'Alerts', '#/alerts', ['alerts.view']],
  ['tasks', 'Tasks', '#/tasks', ['tasks.view']],
  ['releases', 'Releases', '#/releases', ['versions.view']],
  ['users', 'Users', '#/users', ['users.manage']],
  ['audit', 'Audit', '#/audit', ['audit.view']],
];

const current = { cleanup: null, token: 0 };

function allowed(perms) {
  return !perms || perms.some((p) => can(p));
}

function parseHash() {
  let hash = location.hash.replace(/^#/, '');
  if (!hash.startsWith('/')) hash = '/' + hash;
  const i = hash.indexOf('?');
  const path = i >= 0 ? hash.slice(0, i) : hash;
  const query = new URLSearchParams(i >= 0 ? hash.slice(i + 1) : '');
  return { path: path.length > 1 ? path.replace(/\/+$/, '') : path, query };
}

export function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

// Where the user was going when a login was needed: back there after it.
let afterLogin = null;

function goLogin() {
  session.me = null;
  stopLive();
  document.getElementById('app-header').hidden = true;
  const path = parseHash().path;
  if (path !== '/login') {
    afterLogin = location.hash;
    location.hash = '#/login';
  }
}

/** Where to go once logged in: the page that needed the login, else the dashboard. */
export function landing() {
  const target = afterLogin && afterLogin !== '#/login' ? afterLogin : '#/';
  afterLogin = null;
  return target;
}

onUnauthenticated(goLogin);

async function loadMe() {
  const me = await api('GET', '/api/v1/me');
  setMe(me.name, me.role, me.permissions);
}

function renderHeader(navKey) {
  const header = document.getElementById('app-header');
  const nav = document.getElementById('nav');
  fill(nav, navItems.filter((n) => allowed(n[3])).map(([key, text, href]) =>
    h('a', { href, class: 'nav-link' + (key === navKey ? ' active' : ''), 'aria-current': key === navKey ? 'page' : null, text })));
  document.getElementById('whoami').textContent = session.me.name + ' (' + session.me.role + ')';
  header.hidden = false;
}

async function route() {
  const token = ++current.token;
  if (current.cleanup) {
    try {
      current.cleanup();
    } catch (e) {
      console.error(e);
    }
    current.cleanup = null;
  }
  watch({}, null);
  clearError();
  const main = document.getElementById('main');
  main.className = 'main';
  main.replaceChildren();
  const { path, query } = parseHash();

  if (path === '/login') {
    document.getElementById('app-header').hidden = true;
    document.title = 'Log in \u2014 Tether';
    current.cleanup = loginPage.mount(main, { navigate, query, landing, onLogin: () => startLive() }) || null;
    return;
  }

  if (!session.me) {
    // A fresh load: the page's first request goes out beside /api/v1/me, not after it.
    const early = routes.find((r) => r[0].test(path));
    if (early && early[1].prefetch) early[1].prefetch(query);
    try {
      await loadMe();
    } catch (e) {
      if (token !== current.token) return;
      if (e.status === 401) return; // api() went to the login page
      fill(main, h('div', { class: 'page-pad' },
        h('p', { class: 'empty', text: 'Cannot load your session: ' + e.message }),
        h('button', { type: 'button', class: 'btn', text: 'Retry', on: { click: () => route() } })));
      return;
    }
    if (token !== current.token) return;
  }
  startLive();

  let match = null;
  for (const r of routes) {
    const m = path.match(r[0]);
    if (m) {
      match = { route: r, params: m.slice(1).map(decodeURIComponent) };
      break;
    }
  }
  if (!match) {
    renderHeader(null);
    document.title = 'Not found \u2014 Tether';
    fill(main, h('div', { class: 'page-pad' }, h('h1', { text: 'Not found' }),
      h('p', null, 'No page at ', h('code', { text: path }), '. ', h('a', { href: '#/', text: 'Go to the dashboard' }))));
    return;
  }
  const [, page, title, perms, navKey] = match.route;
  renderHeader(navKey);
  document.title = title + ' \u2014 Tether';
  if (!allowed(perms)) {
    fill(main, h('div', { class: 'page-pad' }, h('h1', { text: title }),
      h('p', { class: 'empty', text: 'Your role (' + session.me.role + ') may not use this page.' })));
    return;
  }
  try {
    current.cleanup = page.mount(main, { params: match.params, query, navigate }) || null;
  } catch (e) {
    console.error(e);
    showError('This page failed: ' + e.message, 'client');
  }
}

async function logout() {
  try {
    await api('POST', '/api/v1/auth/logout', undefined, { noRedirect: true });
  } catch (_) {
    // shown by api(); log out locally anyway
  }
  goLogin();
}

document.getElementById('logout').addEventListener('click', logout);
document.getElementById('error').addEventListener('click', clearError);
window.addEventListener('hashchange', route);
checkHealth();
route();
