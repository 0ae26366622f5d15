// Services: the resilience checklist of /v1/audit as badges, and the
// effective policy of each service with where each field comes from.
'use strict';

const AUDIT_NAMES = {
  timeouts: 'timeouts', circuitBreaker: 'circuit breaker', retries: 'retries with backoff',
  bulkhead: 'bulkhead', fallback: 'fallback', healthCheck: 'health check', chaos: 'chaos (30 days)',
};
const AUDIT_KIND = {ok: 'ok', partial: 'warn', missing: 'bad'};

// The view each service card shows: which caller and route, and whether
// its table is open.
const serviceView = {};
const openTables = {};

pages.services = {
  title: 'Services',
  mount(ctx) {
    const list = h('div', {id: 'svc-list'});
    ctx.main.append(h('h1', {}, 'Services'),
      h('p', {class: 'muted', id: 'svc-prometheus'},
        'No Prometheus configured: latency, error rate, ejected hosts and fallback serving are not shown.'),
      list);
    const seen = {};
    let refresh = null;
    const redraw = () => { seen.last = null; refresh(); };
    refresh = ctx.every(2000, async () => {
      const [audit, eff] = await Promise.all([get('/v1/audit'), get('/v1/effective')]);
      // Cards whose view is not the default one ask for theirs.
      const items = await Promise.all(eff.items.map((it) => {
        const v = serviceView[it.service];
        if (!v || (!v.source && !v.route)) return it;
        const q = new URLSearchParams({service: it.service, source: v.source, route: v.route});
        return get('/v1/effective?' + q).then((r) => r.items[0]);
      }));
      const data = {audit: audit.services, items};
      if (!changed(seen, data)) return;
      const byName = {};
      for (const a of audit.services) byName[a.service] = a;
      replace(list, items.map((it) => serviceCard(it, byName[it.service], redraw)));
    });
  },
};

function serviceCard(eff, audit, redraw) {
  const card = h('section', {class: 'card service', id: 'svc-' + eff.service, 'data-service': eff.service});
  const head = h('div', {class: 'svc-head'}, h('h2', {}, eff.service));
  if (audit) head.append(h('span', {class: 'score'}, `${audit.passed}/${audit.total} checks`));
  card.append(head);
  if (audit) {
    card.append(h('div', {class: 'badges'}, audit.checks.map((c) =>
      badge(AUDIT_NAMES[c.item] || c.item, AUDIT_KIND[c.status],
        [c.detail, (c.providedBy || []).length ? 'from ' + c.providedBy.join(', ') : '', c.fix ? 'fix: ' + c.fix : '']
          .filter(Boolean).join('\n')))));
  }
  const view = serviceView[eff.service] || {source: '', route: ''};
  const pick = (key, values, none) => h('select', {'aria-label': key, onchange: (ev) => {
    serviceView[eff.service] = {...view, [key]: ev.target.value};
    redraw();
  }}, h('option', {value: ''}, none), values.map((v) => h('option', {value: v, selected: v === view[key]}, v)));
  card.append(h('div', {class: 'view'}, 'Effective policy for calls from ',
    pick('source', eff.sources, 'any caller'), ' on ', pick('route', eff.routes, 'the default route')));
  if (eff.fields.length === 0) {
    card.append(h('p', {class: 'muted'}, 'No policy applies: the translation defaults hold.'));
  } else {
    // Open on a wide screen; on a phone the operator opens the one wanted.
    // The choice outlives the page's redraws.
    const open = openTables[eff.service] ?? window.innerWidth > 720;
    const det = h('details', {class: 'effective', open},
      h('summary', {}, `${eff.fields.length} fields in force`),
      table('effective cards two', ['field', 'value', 'from'], eff.fields.map((f) => h('tr', {'data-field': f.field},
        h('td', {}, h('code', {}, f.field)),
        h('td', {class: 'value'}, valueText(f.value)),
        h('td', {}, h('span', {class: 'policy'}, f.policy), ' ', badge(levelText(f), 'muted'))))));
    det.addEventListener('toggle', () => { openTables[eff.service] = det.open; });
    card.append(det);
  }
  for (const c of eff.conflicts || []) {
    card.append(h('p', {class: 'bad-text'}, `Conflict on ${c.field}: ${c.policies.join(' and ')} (${c.winner} wins)`));
  }
  return card;
}

function levelText(f) {
  return f.level + ((f.sources || []).length ? ' · from ' + f.sources.join(', ') : '');
}

function valueText(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && v.every((x) => typeof x !== 'object')) return v.join(', ');
  return JSON.stringify(v);
}
