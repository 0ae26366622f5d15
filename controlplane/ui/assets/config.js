// A proxy's config: the exact xDS its group receives (/v1/config), each
// resource type and resource collapsible.
'use strict';

pages.config = {
  title: 'Config',
  mount(ctx, params) {
    const node = params.get('node') || '';
    const service = params.get('service') || '';
    const flavor = params.get('flavor') || '';
    const form = h('form', {class: 'filters', id: 'cfg-form', onsubmit: (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams();
      const fd = new FormData(ev.target);
      for (const k of ['node', 'service', 'flavor']) if (fd.get(k)) q.set(k, fd.get(k));
      location.hash = '#/config?' + q;
    }});
    const body = h('div', {id: 'cfg-body'});
    ctx.main.append(h('h1', {}, 'Config'), form, body);
    replace(form,
      h('label', {}, 'proxy ', h('select', {name: 'node', id: 'cfg-node'}, h('option', {value: ''}, '—'))),
      h('span', {class: 'muted'}, 'or'),
      h('label', {}, 'service ', h('input', {name: 'service', id: 'cfg-service', value: service, size: 12})),
      h('label', {}, 'flavor ', h('select', {name: 'flavor', id: 'cfg-flavor'},
        ['envoy', 'grpc'].map((f) => h('option', {value: f, selected: f === flavor}, f)))),
      h('button', {type: 'submit'}, 'Show'));
    const proxies = get('/v1/proxies').then((list) => (list.items || []).slice().sort((a, b) => a.id.localeCompare(b.id)));
    proxies.then((items) => {
      const sel = document.getElementById('cfg-node');
      if (!ctx.alive || !sel) return;
      for (const p of items) {
        sel.append(h('option', {value: p.id, selected: p.id === node}, `${p.id} (${p.service}, ${p.flavor})`));
      }
    }).catch(handleFailure);
    if (!node && !service) {
      replace(body, h('p', {class: 'muted'}, 'Pick a proxy (or a service and flavor) to see the xDS it receives.'));
      return;
    }
    const byGroup = (svc, flv) => get('/v1/config?' + new URLSearchParams({service: svc, flavor: flv || 'envoy'}));
    // A proxy of another replica is not known here by its id: this
    // replica answers for its group (service and flavor) instead.
    const load = node
      ? get('/v1/config?' + new URLSearchParams({node})).then((cfg) => ({cfg, what: node}), (e) => {
        if (!(e instanceof APIError) || e.status !== 404) throw e;
        return proxies.then((items) => {
          const p = items.find((x) => x.id === node);
          if (!p) throw e;
          return byGroup(p.service, p.flavor).then((cfg) => ({cfg, what: `${p.flavor}/${p.service}`,
            note: `${node} is connected to replica ${p.replica}; this is its group's config as this replica builds it.`}));
        });
      })
      : byGroup(service, flavor).then((cfg) => ({cfg, what: `${flavor || 'envoy'}/${service}`}));
    load.then(({cfg, what, note}) => {
      if (!ctx.alive) return;
      const toggle = (open) => body.querySelectorAll('details').forEach((d) => { d.open = open; });
      replace(body,
        note ? h('p', {class: 'muted', id: 'cfg-note'}, note) : null,
        h('p', {}, 'The xDS of ', h('code', {}, what), ' ',
          h('button', {type: 'button', class: 'link', onclick: () => toggle(true)}, 'expand all'), ' ',
          h('button', {type: 'button', class: 'link', onclick: () => toggle(false)}, 'collapse all')),
        Object.entries(cfg).map(([type, items]) => h('details', {class: 'xds', 'data-type': type, open: true},
          h('summary', {}, `${type} (${(items || []).length})`),
          (items || []).map((r) => h('details', {class: 'resource'},
            h('summary', {}, r.name || r.clusterName || r.cluster_name || '(unnamed)'),
            h('pre', {}, JSON.stringify(r, null, 2)))))));
    }).catch(handleFailure);
  },
};
