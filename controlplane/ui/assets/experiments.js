// Experiments: running and past game days, their faults, time left,
// hypothesis and, where the server records them, readings and verdict; the
// kill switch for editors.
'use strict';

function faultsText(spec) {
  const out = [];
  if (spec.abort) {
    const code = spec.abort.httpStatus ? 'HTTP ' + spec.abort.httpStatus : 'gRPC status ' + spec.abort.grpcStatus;
    out.push(`abort ${spec.abort.percent}% with ${code}`);
  }
  if (spec.delay) out.push(`delay ${spec.delay.percent}% by ${spec.delay.fixed}`);
  return out.join('; ') || 'none';
}

// The status fields shown by name; any other field the server adds (the
// readings and verdict of a measured hypothesis) is shown as it comes.
const KNOWN_STATUS = ['startedAt', 'endsAt', 'endedAt', 'startedBy', 'stoppedBy', 'outcome'];

function experimentCard(e, running) {
  const st = e.status || {};
  const sp = e.spec;
  const rows = [
    ['target', targetText(sp.target)],
    ['sources', (sp.sources || []).join(', ') || 'every caller'],
    ['headers', Object.entries(sp.headers || {}).map(([k, v]) => `${k}: ${v}`).join(', ') || 'every request'],
    ['faults', faultsText(sp)],
    ['duration', sp.duration],
    running ? ['time left', countdown(st.endsAt)] : ['ended', fmtTime(st.endedAt || st.endsAt)],
    ['started', `${fmtTime(st.startedAt)} by ${st.startedBy || '?'}`],
  ];
  if (st.stoppedBy) rows.push(['stopped by', st.stoppedBy]);
  if (st.verdict) rows.push(['verdict', badge(st.verdict, st.verdict === 'held' ? 'ok' : 'bad')]);
  const extra = Object.entries(st).filter(([k]) => !KNOWN_STATUS.includes(k) && k !== 'verdict');
  const outcome = st.outcome || (running ? 'running' : 'ended');
  return h('section', {class: 'card experiment', 'data-name': e.metadata.name},
    h('div', {class: 'svc-head'}, h('h3', {}, e.metadata.name),
      badge(outcome, outcome === 'running' ? 'warn' : outcome === 'stopped' ? 'bad' : 'muted')),
    sp.hypothesis ? h('p', {class: 'hypothesis'}, '“' + sp.hypothesis + '”') : null,
    h('dl', {class: 'kv'}, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    extra.length ? h('details', {}, h('summary', {}, 'readings'),
      h('pre', {}, JSON.stringify(Object.fromEntries(extra), null, 2))) : null);
}

pages.experiments = {
  title: 'Experiments',
  mount(ctx) {
    const actions = h('div', {class: 'actions', id: 'exp-actions'});
    const result = h('p', {id: 'kill-result', class: 'muted'});
    const running = h('div', {id: 'exp-running'});
    const past = h('div', {id: 'exp-past'});
    ctx.main.append(h('h1', {}, 'Experiments'), actions, result,
      h('h2', {}, 'Running'), running, h('h2', {}, 'Past'), past);
    let count = 0;
    const seen = {};
    const refresh = async () => {
      const [live, hist] = await Promise.all([get('/v1/experiments'), get('/v1/experiments/history')]);
      if (!ctx.alive || !changed(seen, [live, hist])) return;
      const items = live.items || [];
      count = items.length;
      replace(running, items.length
        ? items.map((e) => experimentCard(e, true))
        : h('p', {class: 'muted', id: 'exp-none'}, 'No experiment is running.'));
      const ended = (hist.items || []).filter((e) => !e.status || e.status.outcome !== 'running');
      replace(past, ended.length ? ended.map((e) => experimentCard(e, false)) : h('p', {class: 'muted'}, 'No experiment has run yet.'));
      if (isEditor()) {
        const btn = document.getElementById('kill-switch');
        if (btn) btn.disabled = count === 0;
      }
    };
    if (isEditor()) {
      actions.append(h('button', {id: 'kill-switch', class: 'danger', disabled: true, onclick: async () => {
        const ok = await confirmDialog('Stop every experiment?',
          `The kill switch stops all ${count} running experiment(s) at once, on every proxy. They cannot be resumed.`,
          'Stop them all');
        if (!ok || !ctx.alive) return;
        try {
          const res = await api('POST', '/v1/experiments/stop');
          result.textContent = res.stopped.length
            ? `Stopped by ${res.stoppedBy}: ${res.stopped.join(', ')}.`
            : 'Nothing was running.';
          seen.last = null;
          await refresh();
        } catch (e) {
          handleFailure(e);
        }
      }}, 'Kill switch: stop all experiments'));
    }
    ctx.every(2000, refresh);
  },
};
