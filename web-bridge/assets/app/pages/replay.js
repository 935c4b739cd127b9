// #/sessions/ID: the asciinema player on the session's recording, with speed and idle limit.

import { api, h, fill, card, facts, badge, timeEl, fmtBytes, fmtDuration, field, loadAssets } from '../lib.js';

export function mount(main, ctx) {
  const id = ctx.params[0];
  let dead = false;
  let player = null;
  const url = '/api/v1/sessions/' + encodeURIComponent(id) + '/recording';

  const speed = h('select', { id: 'speed' }, ['0.5', '1', '2', '4'].map((s) => h('option', { value: s, text: s + '\u00D7' })));
  speed.value = '1';
  const idle = h('select', { id: 'idle-limit' },
    [['0', 'off'], ['1', '1 s'], ['2', '2 s'], ['5', '5 s']].map(([v, t]) => h('option', { value: v, text: t })));
  idle.value = '2';
  const playerEl = h('div', { id: 'player', class: 'player' });
  const info = h('div', { id: 'session-facts' }, h('p', { class: 'muted', text: 'Loading\u2026' }));
  const download = h('a', { href: url, download: 'session-' + id + '.cast', class: 'btn btn-small', text: 'Download .cast' });

  main.append(
    h('div', { class: 'crumbs' }, h('a', { href: '#/sessions', text: 'Sessions' }), ' / ', h('span', { class: 'mono', text: id })),
    h('div', { class: 'page-head' }, h('h1', { text: 'Session replay' }),
      h('div', { class: 'toolbar tight' }, field('Speed', speed), field('Idle time limit', idle), download)),
    h('div', { class: 'replay-layout' },
      h('div', { class: 'replay-main' }, playerEl, h('p', { class: 'muted small', text: 'Space plays and pauses; \u2190 \u2192 seek; click the progress bar to jump.' })),
      card('Session', info)));

  function create(startAt) {
    if (typeof AsciinemaPlayer === 'undefined') return; // still loading
    if (player) {
      try {
        player.dispose();
      } catch (_) { /* gone */ }
      player = null;
    }
    playerEl.replaceChildren();
    const opts = {
      speed: Number(speed.value),
      fit: 'both',
      preload: true,
      controls: true,
      terminalFontFamily: 'ui-monospace, SFMono-Regular, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    };
    const il = Number(idle.value);
    if (il > 0) opts.idleTimeLimit = il;
    if (startAt) {
      opts.startAt = startAt;
      opts.autoPlay = true;
    }
    try {
      player = AsciinemaPlayer.create(url, playerEl, opts);
      window.player = player;
    } catch (e) {
      fill(playerEl, h('p', { class: 'empty', text: 'The recording could not be played: ' + e.message }));
    }
  }

  async function recreate() {
    let t = 0;
    if (player) {
      try {
        t = await player.getCurrentTime();
      } catch (_) {
        t = 0;
      }
    }
    create(t);
  }
  speed.addEventListener('change', recreate);
  idle.addEventListener('change', recreate);

  function showFacts(s) {
    if (dead) return;
    if (!s) {
      fill(info, h('p', { class: 'muted', text: 'The session\u2019s record could not be read.' }));
      return;
    }
    const start = s.connected_at_ms || s.created_at_ms;
    fill(info, facts([
      ['Status', badge(s.status)],
      ['Node', h('a', { href: '#/nodes/' + encodeURIComponent(s.node_id), text: s.hostname || s.node_id })],
      ['User', s.user],
      ['Command', h('code', { text: s.command })],
      ['Size', s.size ? s.size.cols + '\u00D7' + s.size.rows : null],
      ['Opened', timeEl(s.created_at_ms)],
      ['Connected', timeEl(s.connected_at_ms)],
      ['Closed', timeEl(s.closed_at_ms, { none: 'still open' })],
      ['Length', s.closed_at_ms ? fmtDuration(s.closed_at_ms - start) : null],
      ['Exit', s.exit ? (s.exit.exit_code != null ? 'code ' + s.exit.exit_code : s.exit.signal != null ? 'signal ' + s.exit.signal : null) : null],
      ['Error', s.error || null],
      ['Output', fmtBytes(s.output_bytes)],
      ['Input', fmtBytes(s.input_bytes)],
      ['Browser address', s.client_addr ? h('span', { class: 'mono', text: s.client_addr }) : null],
      ['Node address', s.node_addr ? h('span', { class: 'mono', text: s.node_addr }) : null],
      ['Recording', s.recording ? h('span', { class: 'mono small', text: s.recording }) : 'none'],
      ['Recording note', s.recording_note || undefined],
      ['Session id', h('span', { class: 'mono small', text: s.id })],
    ]));
  }

  api('GET', '/api/v1/sessions/' + encodeURIComponent(id))
    .then(showFacts)
    .catch(() => showFacts(null));

  fill(playerEl, h('p', { class: 'muted', text: 'Loading the player\u2026' }));
  loadAssets(['/assets/vendor/asciinema-player.css', '/assets/vendor/asciinema-player.min.js']).then(() => {
    if (!dead) create(0);
  }, (e) => {
    if (!dead) fill(playerEl, h('p', { class: 'empty', text: 'The player could not load (' + e.message + ').' }));
  });
  return () => {
    dead = true;
    if (player) {
      try {
        player.dispose();
      } catch (_) { /* gone */ }
    }
  };
}
