// #/releases: agent releases (version, platform, size, digest, signing key, who uploaded them),
// the form that deploys one, and recent deploys with their progress. Uploading stays with the
// CLI (`tether release sign` and `upload`): a release is signed where its key is, never here.
// Refreshed every 3 seconds while visible.

import {
  api, h, fill, card, field, badge, timeEl, fmtBytes, confirmButton, can, poll, parseLabels,
  groupOptionText,
} from '../lib.js';

/** A bar filled to `pct` percent. */
export function bar(pct) {
  const fillEl = h('span', { class: 'hbar' });
  fillEl.style.width = pct + '%';
  return h('span', { class: 'hbar-track', title: pct + '%' }, fillEl);
}

/** "12 of 40 updated" and a bar, for a deploy's counts. */
export function progress(c) {
  const done = c.success + c.failed + c.rollback + c.skipped + c.cancelled;
  const pct = c.total ? Math.round((done * 100) / c.total) : 100;
  const failed = c.failed + c.rollback;
  return h('div', { class: 'deploy-progress' }, bar(pct),
    h('span', { class: 'small', text: c.success + ' of ' + c.total + ' updated' + (failed ? ', ' + failed + ' failed' : '') + (c.skipped ? ', ' + c.skipped + ' skipped' : '') }));
}

export function mount(main) {
  let dead = false;
  const releases = h('tbody');
  const deploys = h('tbody');
  const releaseTable = h('table', { id: 'releases', class: 'table' },
    h('thead', null, h('tr', null, ['Version', 'Platform', 'Size', 'SHA-256', 'Signed by', 'Uploaded', 'Notes', '']
      .map((t) => h('th', { scope: 'col', text: t })))), releases);
  const deployTable = h('table', { id: 'deploys', class: 'table' },
    h('thead', null, h('tr', null, ['Deploy', 'Version', 'Strategy', 'Targets', 'State', 'Progress', 'Started']
      .map((t) => h('th', { scope: 'col', text: t })))), deploys);
  const versions = h('select', { id: 'deploy-version', required: true });
  main.append(
    h('div', { class: 'page-head' }, h('h1', { text: 'Agent releases' }), h('span', { class: 'muted small', id: 'releases-updated' })),
    card('Releases', h('p', { class: 'muted small', text: 'Signed and uploaded with the CLI: tether release sign FILE --key release.key --version V --out m.toml; tether release upload FILE --manifest m.toml.' }),
      h('div', { class: 'table-wrap' }, releaseTable)),
    can('versions.deploy') ? card('Deploy a release', deployForm()) : null,
    card('Deploys', h('div', { class: 'table-wrap' }, deployTable)));

  function renderReleases(list) {
    const seen = new Set();
    fill(versions, list.filter((r) => !seen.has(r.version) && seen.add(r.version))
      .map((r) => h('option', { value: r.version, text: r.version })));
    if (!list.length) {
      fill(releases, h('tr', null, h('td', { colspan: '8', class: 'empty', text: 'No releases yet.' })));
      return;
    }
    fill(releases, list.map((r) => h('tr', { 'data-version': r.version },
      h('td', null, h('strong', { text: r.version })),
      h('td', { text: r.os + '/' + r.arch }),
      h('td', { class: 'num', text: fmtBytes(r.size) }),
      h('td', null, h('code', { title: r.sha256, text: r.sha256.slice(0, 12) })),
      h('td', null, h('code', { text: r.key_id })),
      h('td', null, timeEl(r.uploaded_at_ms, { relOnly: true }), h('span', { class: 'muted small', text: ' by ' + r.uploaded_by })),
      h('td', { class: 'muted', text: r.notes }),
      h('td', null, can('versions.delete') && !r.active_deploys.length ? confirmButton({
        label: 'Delete', cls: 'btn-small delete-release', question: 'Delete release ' + r.version + ' (every platform)?', confirmLabel: 'Delete',
        onConfirm: async () => {
          await api('DELETE', '/api/v1/releases/' + encodeURIComponent(r.version));
          await refresh();
        },
      }) : (r.active_deploys.length ? h('span', { class: 'muted small', text: 'in deploy ' + r.active_deploys.join(', ') }) : null)))));
  }

  function renderDeploys(list) {
    if (!list.length) {
      fill(deploys, h('tr', null, h('td', { colspan: '7', class: 'empty', text: 'No deploys yet.' })));
      return;
    }
    fill(deploys, list.map((d) => h('tr', { 'data-deploy': String(d.id), 'data-state': d.state },
      h('td', null, h('a', { href: '#/deploys/' + d.id, text: '#' + d.id })),
      h('td', { text: d.version + (d.kind === 'rollback' ? ' (rollback of #' + d.rollback_of + ')' : '') }),
      h('td', { text: d.strategy }),
      h('td', { text: d.targets }),
      h('td', null, badge(d.state)),
      h('td', null, progress(d.counts)),
      h('td', null, timeEl(d.created_at_ms, { relOnly: true }), h('span', { class: 'muted small', text: ' by ' + d.created_by })))));
  }

  function deployForm() {
    const group = h('select', { id: 'deploy-group' }, h('option', { value: '', text: '(no group)' }));
    const labels = h('input', { id: 'deploy-labels', placeholder: 'env=prod, role=web', autocomplete: 'off', spellcheck: 'false' });
    const nodes = h('input', { id: 'deploy-nodes', placeholder: 'web-01, db-*', autocomplete: 'off', spellcheck: 'false' });
    const all = h('input', { id: 'deploy-all', type: 'checkbox' });
    const strategy = h('select', { id: 'deploy-strategy' }, [['all', 'all at once'], ['rolling', 'rolling batches'], ['canary', 'canary first']]
      .map(([v, t]) => h('option', { value: v, text: t })));
    const batch = h('input', { id: 'deploy-batch', placeholder: '10%', autocomplete: 'off' });
    const pause = h('input', { id: 'deploy-pause', type: 'number', min: '0', value: '0' });
    const canary = h('input', { id: 'deploy-canary', placeholder: '1', autocomplete: 'off' });
    const canaryWait = h('input', { id: 'deploy-canary-wait', type: 'number', min: '0', value: '60' });
    const maxFailures = h('input', { id: 'deploy-max-failures', placeholder: '0', autocomplete: 'off' });
    const offline = h('select', { id: 'deploy-offline' }, [['wait', 'update when they return'], ['skip', 'skip them']]
      .map(([v, t]) => h('option', { value: v, text: t })));
    const watchdog = h('input', { id: 'deploy-watchdog', type: 'number', min: '1', value: '60' });
    const error = h('p', { class: 'form-error', id: 'deploy-form-error', role: 'alert', hidden: true });
    const batchRow = h('div', { class: 'form-row wrap' }, field('Nodes per batch (N or P%)', batch), field('Pause between batches (s)', pause));
    const canaryRow = h('div', { class: 'form-row wrap' }, field('Canary nodes (N or P%)', canary), field('Wait after the canaries (s)', canaryWait));
    const shown = () => {
      batchRow.hidden = strategy.value === 'all';
      canaryRow.hidden = strategy.value !== 'canary';
    };
    strategy.addEventListener('change', shown);
    shown();
    api('GET', '/api/v1/groups').then((list) => {
      if (dead) return;
      for (const g of list) group.append(h('option', { value: g.name, text: groupOptionText(g) + ' (' + g.nodes_total + ')' }));
    }).catch(() => {});
    const form = h('form', { id: 'deploy-add', novalidate: true },
      h('div', { class: 'form-row wrap' }, field('Version', versions), field('Strategy', strategy)),
      h('div', { class: 'form-row wrap' }, field('Group (and below)', group), field('Labels', labels), field('Nodes', nodes),
        h('label', { class: 'check' }, all, ' all nodes')),
      batchRow, canaryRow,
      h('div', { class: 'form-row wrap' }, field('Failures before it halts (N or P%)', maxFailures), field('Nodes offline at their turn', offline),
        field('New agent must connect within (s)', watchdog)),
      h('button', { type: 'submit', class: 'btn primary', text: 'Deploy' }));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.hidden = true;
      const fail = (m) => { error.textContent = m; error.hidden = false; };
      let lbl;
      try {
        lbl = Object.entries(parseLabels(labels.value));
      } catch (e) {
        return fail(e.message);
      }
      const s = strategy.value;
      const body = {
        version: versions.value, strategy: s, labels: lbl, all: all.checked,
        groups: group.value ? [group.value] : [],
        nodes: nodes.value.split(',').map((x) => x.trim()).filter(Boolean),
        max_failures: maxFailures.value.trim() || null, offline: offline.value,
        watchdog_s: Number(watchdog.value || 60),
      };
      if (s !== 'all') {
        body.batch = batch.value.trim() || null;
        body.pause_s = Number(pause.value || 0);
      }
      if (s === 'canary') {
        body.canary = canary.value.trim() || null;
        body.canary_wait_s = Number(canaryWait.value || 0);
      }
      try {
        const d = await api('POST', '/api/v1/deploys', body, { quiet: true });
        location.hash = '#/deploys/' + d.id;
      } catch (e) {
        fail(e.message);
      }
    });
    return h('div', null, form, error);
  }

  async function refresh() {
    const [list, recent] = await Promise.all([api('GET', '/api/v1/releases'), api('GET', '/api/v1/deploys?limit=20')]);
    if (dead) return;
    renderReleases(list);
    renderDeploys(recent);
    document.getElementById('releases-updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  }
  const stop = poll(() => refresh().catch(() => {}), 3000);
  return () => {
    dead = true;
    stop();
  };
}
