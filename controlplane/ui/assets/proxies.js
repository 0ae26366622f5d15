// Proxies: every proxy of the fleet, its revision, per type ACKed or
// pending, and the full text of its last rejection; filters by service,
// flavor and "rejecting".
'use strict';

const TYPES = ['listeners', 'routes', 'clusters', 'endpoints'];
// MAX_ROWS bounds the table, so a fleet of thousands does not make a page
// of thousands of rows every second: the filters narrow it.
const MAX_ROWS = 500;
const proxyFilter = {service: '', flavor: '', rejecting: false};

// rejecting says whether the proxy's last answer of some type was a NACK
// of what it was sent (as api.ProxyStatus.Rejecting).
function rejecting(p) {
  return Object.values(p.types || {}).some((t) => t.lastNack && t.lastNack.version === t.sent);
}

function typeCell(t) {
  if (!t) return h('td', {class: 'muted'}, '—');
  if (t.lastNack && t.lastNack.version === t.sent) return h('td', {}, badge('NACK', 'bad', 'rejected ' + t.sent));
  if (t.sent && t.acked === t.sent) return h('td', {}, badge('ACKed', 'ok', `version ${t.acked}, revision ${t.ackedRevision || '?'}`));
  return h('td', {}, badge('pending', 'warn', `sent ${t.sent || 'nothing yet'}, ACKed ${t.acked || 'nothing'}`));
}

pages.proxies = {
  title: 'Proxies',
  mount(ctx, params) {
    if (params.get('service')) proxyFilter.service = params.get('service');
    const filters = h('div', {class: 'filters', id: 'px-filters'});
    const body = h('div', {id: 'px-body'});
    ctx.main.append(h('h1', {}, 'Proxies'), filters, body);
    let items = [];
    const seen = {};
    const draw = () => {
      const shown = items.filter((p) =>
        (!proxyFilter.service || p.service === proxyFilter.service) &&
        (!proxyFilter.flavor || p.flavor === proxyFilter.flavor) &&
        (!proxyFilter.rejecting || rejecting(p)));
      drawFilters(filters, items, draw);
      drawProxies(body, shown, items.length);
    };
    ctx.every(1000, async () => {
      const list = await get('/v1/proxies');
      if (!changed(seen, list)) return;
      items = (list.items || []).slice().sort((a, b) => a.id.localeCompare(b.id));
      draw();
    });
  },
};

function drawFilters(el, items, draw) {
  const uniq = (f) => [...new Set(items.map(f))].sort();
  const sel = (id, key, values, all) => h('label', {}, key + ' ',
    h('select', {id, onchange: (ev) => { proxyFilter[key] = ev.target.value; draw(); }},
      h('option', {value: ''}, all),
      [...new Set([...values, proxyFilter[key]].filter(Boolean))].map((v) =>
        h('option', {value: v, selected: v === proxyFilter[key]}, v))));
  replace(el,
    sel('px-service', 'service', uniq((p) => p.service), 'all services'),
    sel('px-flavor', 'flavor', ['envoy', 'grpc', ...uniq((p) => p.flavor)], 'all flavors'),
    h('label', {}, h('input', {type: 'checkbox', id: 'px-rejecting', checked: proxyFilter.rejecting,
      onchange: (ev) => { proxyFilter.rejecting = ev.target.checked; draw(); }}), ' rejecting only'));
}

function drawProxies(el, shown, total) {
  if (total === 0) { replace(el, h('p', {class: 'muted'}, 'No proxy is connected.')); return; }
  const rows = [];
  for (const p of shown.slice(0, MAX_ROWS)) {
    rows.push(h('tr', {class: 'proxy', 'data-id': p.id},
      h('td', {}, h('a', {href: '#/config?node=' + encodeURIComponent(p.id)}, p.id)),
      h('td', {}, p.service), h('td', {}, p.flavor), h('td', {}, p.replica),
      h('td', {class: 'num'}, p.revision ? String(p.revision) : '—'),
      h('td', {}, p.converged ? badge('converged', 'ok') : rejecting(p) ? badge('rejecting', 'bad') : badge('pending', 'warn')),
      TYPES.map((t) => typeCell((p.types || {})[t]))));
    for (const t of TYPES) {
      const ts = (p.types || {})[t];
      if (!ts || !ts.lastNack) continue;
      const live = ts.lastNack.version === ts.sent;
      rows.push(h('tr', {class: 'nackrow'}, h('td', {colspan: 6 + TYPES.length},
        h('div', {class: 'nack-head'}, `${t}: ${live ? 'rejected' : 'earlier rejected'} version ${ts.lastNack.version} ${fmtAgo(ts.lastNack.time)}`),
        h('pre', {class: 'nack'}, ts.lastNack.error))));
    }
  }
  const note = shown.length > MAX_ROWS ? `; the first ${MAX_ROWS} are listed, filter to see the others` : '';
  replace(el, h('p', {class: 'muted', id: 'px-count'}, `${shown.length} of ${total} proxies${note}`),
    table('proxies cards', ['id', 'service', 'flavor', 'replica', 'revision', 'state', ...TYPES], rows));
}
