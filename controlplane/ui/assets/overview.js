// Overview: the revision, readiness, the store, replicas, the rollout (live,
// with its chart), build problems, the directory sync and the running
// experiments.
'use strict';

// rolloutHistory keeps the rollout samples of this tab, for the chart: the
// Overview takes one a second while it is shown, and a sampler takes them
// while another page is, so the chart has no hole where the operator looked
// elsewhere.
const rolloutHistory = [];
const ROLLOUT_WINDOW_MS = 5 * 60 * 1000;

function sampleRollout(rollout) {
  rolloutHistory.push({t: Date.now(), ...rollout});
  while (rolloutHistory.length && rolloutHistory[0].t < Date.now() - ROLLOUT_WINDOW_MS) rolloutHistory.shift();
}

// The sampler: its failures are the other page's to show (or the
// Overview's, which polls the same status).
setInterval(() => {
  if (!app.me || !current || !current.alive || current.main.getAttribute('data-page') === 'overview') return;
  get('/v1/status').then((st) => sampleRollout(st.rollout), () => {});
}, 1000);

// rolloutState names where the rollout stands.
function rolloutState(r) {
  if (r.total === 0) return {text: 'no proxies', kind: 'muted'};
  if (r.rejecting > 0) return {text: 'rejecting', kind: 'bad'};
  if (r.converged === r.total) return {text: 'converged', kind: 'ok'};
  return {text: 'rolling out', kind: 'warn'};
}

function stat(id, label, value, extra) {
  return h('div', {class: 'stat'}, h('div', {class: 'label'}, label),
    h('div', {class: 'value', id}, value), extra || null);
}

pages.overview = {
  title: 'Overview',
  mount(ctx) {
    const top = h('section', {class: 'grid4', id: 'ov-top'});
    const rollout = h('section', {class: 'card', id: 'ov-rollout'});
    const chart = h('div', {id: 'ov-chart'});
    const side = h('div', {class: 'grid2'});
    const replicas = h('section', {class: 'card', id: 'ov-replicas'});
    const problems = h('section', {class: 'card', id: 'ov-problems'});
    const sync = h('section', {class: 'card', id: 'ov-sync'});
    const exps = h('section', {class: 'card', id: 'ov-experiments'});
    side.append(replicas, problems);
    ctx.main.append(h('h1', {}, 'Overview'), top, rollout, side, h('div', {class: 'grid2'}, exps, sync));
    rollout.append(h('h2', {}, 'Rollout'), h('div', {id: 'ov-rollout-body'}), chart);
    const seen = {}, seenProxies = {}, seenExps = {};
    ctx.on(window, 'resize', () => drawChart(chart));

    ctx.every(1000, async () => {
      const st = await get('/v1/status');
      sampleRollout(st.rollout);
      drawChart(chart);
      if (!changed(seen, st)) return;
      drawTop(top, st);
      drawRollout(document.getElementById('ov-rollout-body'), st);
      drawProblems(problems, st.problems || []);
      drawSync(sync, st.sync);
    });
    ctx.every(5000, async () => {
      const list = await get('/v1/proxies');
      if (changed(seenProxies, list)) drawReplicas(replicas, list.items || []);
    });
    ctx.every(2000, async () => {
      const list = await get('/v1/experiments');
      if (changed(seenExps, list)) drawRunning(exps, list.items || []);
    });
  },
};

// drawChart draws the rollout samples of this tab: the last five minutes,
// or since the first sample (at least 30 s) when the tab is younger.
function drawChart(el) {
  const now = Date.now();
  const span = rolloutHistory.length ? now - rolloutHistory[0].t : 0;
  const windowMs = Math.min(ROLLOUT_WINDOW_MS, Math.max(30 * 1000, span));
  const series = (key) => rolloutHistory.map((p) => ({t: p.t, v: p[key]}));
  replace(el, lineChart([
    {name: 'converged', cls: 'ok', points: series('converged')},
    {name: 'pending', cls: 'warn', points: series('pending')},
    {name: 'rejecting', cls: 'bad', points: series('rejecting')},
  ], {width: el.clientWidth, now, windowMs, label: 'proxies by rollout state over time'}));
}

function drawTop(el, st) {
  replace(el,
    stat('ov-revision', 'Store revision', String(st.revision)),
    stat('ov-ready', 'Readiness', badge(st.ready ? 'ready' : 'not ready', st.ready ? 'ok' : 'bad'),
      (st.reasons || []).length ? h('ul', {class: 'reasons'}, st.reasons.map((r) => h('li', {}, r))) : null),
    stat('ov-store', 'Store', badge(st.storeUp ? 'reachable' : 'unreachable', st.storeUp ? 'ok' : 'bad')),
    stat('ov-replica', 'This replica', st.replica || '—'));
}

function drawRollout(el, st) {
  const r = st.rollout;
  const state = rolloutState(r);
  const pct = (n) => (r.total ? (100 * n) / r.total : 0);
  const bar = h('div', {class: 'bar', title: `${r.converged} converged, ${r.pending} pending, ${r.rejecting} rejecting`});
  for (const [n, cls] of [[r.converged, 'ok'], [r.pending, 'warn'], [r.rejecting, 'bad']]) {
    const seg = h('div', {class: 'seg ' + cls});
    seg.style.width = pct(n) + '%';
    bar.append(seg);
  }
  replace(el,
    h('p', {}, 'Revision ', h('strong', {}, String(st.revision)), ': ',
      h('span', {id: 'rollout-state', class: 'badge ' + state.kind}, state.text)),
    h('div', {class: 'counts'},
      stat('rollout-total', 'Proxies', String(r.total)),
      stat('rollout-converged', 'Converged', String(r.converged)),
      stat('rollout-pending', 'Pending', String(r.pending)),
      stat('rollout-rejecting', 'Rejecting', String(r.rejecting))),
    bar);
}

function drawReplicas(el, proxies) {
  const by = {};
  for (const p of proxies) by[p.replica] = (by[p.replica] || 0) + 1;
  const rows = Object.keys(by).sort().map((r) => h('tr', {}, h('td', {}, r), h('td', {class: 'num'}, String(by[r]))));
  replace(el, h('h2', {}, 'Replicas'),
    rows.length ? table('', ['replica', 'proxies'], rows) : h('p', {class: 'muted'}, 'No proxy is connected to any replica.'));
}

function drawProblems(el, problems) {
  replace(el, h('h2', {}, 'Build problems'),
    problems.length
      ? h('ul', {class: 'problems', id: 'ov-problem-list'}, problems.map((p) =>
        h('li', {}, p.group ? h('code', {}, p.group) : null, p.group ? ': ' : '', p.message)))
      : h('p', {class: 'ok-text'}, 'None: the last build included every service.'));
}

function drawSync(el, sync) {
  if (!sync) {
    replace(el, h('h2', {}, 'Directory sync'), h('p', {class: 'muted'}, 'Off: this replica runs without --sync-dir.'));
    return;
  }
  replace(el, h('h2', {}, 'Directory sync'),
    h('p', {}, badge(sync.ok ? 'in sync' : 'failing', sync.ok ? 'ok' : 'bad'), ' ', h('code', {}, sync.dir)),
    sync.error ? h('pre', {class: 'nack'}, sync.error) : null,
    h('p', {class: 'muted'}, `Source ${sync.source}; last sync ${fmtAgo(sync.lastSync) || 'never'}` +
      (sync.revision ? `, at revision ${sync.revision}` : '') + '.'));
}

function drawRunning(el, items) {
  replace(el, h('h2', {}, 'Running experiments'),
    items.length
      ? h('ul', {class: 'running'}, items.map((e) => h('li', {},
        h('a', {href: '#/experiments'}, e.metadata.name), ' on ', h('code', {}, targetText(e.spec.target)), ' — ',
        countdown(e.status && e.status.endsAt))))
      : h('p', {class: 'muted', id: 'ov-no-experiments'}, 'No experiment is running.'));
}

// targetText renders a target: "payments" or "payments /charge".
function targetText(t) {
  if (!t) return '';
  const who = t.service || (t.selector ? Object.entries(t.selector).map(([k, v]) => `${k}=${v}`).join(',') : '');
  return who + (t.route ? ' ' + t.route.pathPrefix : '');
}
