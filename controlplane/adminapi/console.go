package adminapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// The two reads the web console needs beyond the rest of the API: who the
// caller is, and the merged policy of each service with the origin of each
// field.

// serveWhoAmI answers GET /v1/whoami with the role of the presented token.
// The route needs a viewer, so a request that reaches it carries a known
// token (or the server has none).
func (s *Server) serveWhoAmI(w http.ResponseWriter, r *http.Request) {
	if s.Tokens == nil {
		writeJSON(w, http.StatusOK, api.WhoAmI{Name: callerOf(r.Context()), Role: RoleEditor.String()})
		return
	}
	_, presented, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	t, _ := s.Tokens.lookup(strings.TrimSpace(presented))
	writeJSON(w, http.StatusOK, api.WhoAmI{Name: t.name, Role: t.role.String(), Authentication: true})
}

// serveEffective answers GET /v1/effective[?service=S][&source=C][&route=P]:
// the merged policy of every service (or of S), for calls from C (default:
// any caller no source-scoped policy names) on route P (default: the
// service's default route).
func (s *Server) serveEffective(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	service, source, route := q.Get("service"), q.Get("source"), q.Get("route")
	if service == "" && (source != "" || route != "") {
		s.sendError(w, r, api.Invalid("source and route need service", api.Violation{Field: "service", Message: "required with source or route"}))
		return
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	set, rev, _, err := s.Store.Load(ctx)
	if err == nil && service != "" && set.Services[service] == nil {
		err = fmt.Errorf("service %q: %w", service, store.ErrNotFound)
	}
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	names := set.ServiceNames()
	if service != "" {
		names = []string{service}
	}
	rep := api.EffectiveReport{Revision: rev, Items: []api.EffectiveService{}}
	for _, name := range names {
		item, err := effectiveOf(set, name, source, route)
		if err != nil {
			s.sendError(w, r, err)
			return
		}
		rep.Items = append(rep.Items, item)
	}
	writeJSON(w, http.StatusOK, rep)
}

// effectiveOf resolves one (source, service, route) and lists each field in
// force with the policy that sets it.
func effectiveOf(set *policies.Set, service, source, route string) (api.EffectiveService, error) {
	eff := set.Resolve(source, service, route)
	out := api.EffectiveService{Service: service, Source: source, Route: route,
		Sources: sourcesFor(set, service), Routes: set.Routes(service),
		Fields: []api.EffectiveField{}, Conflicts: eff.Conflicts}
	if out.Routes == nil {
		out.Routes = []string{}
	}
	raw, err := json.Marshal(eff.Spec)
	if err != nil {
		return out, err
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return out, err
	}
	mergeKey := map[string]string{}
	for _, l := range policies.PolicyLeaves() {
		mergeKey[l.Path] = l.MergeKey()
	}
	for _, path := range policies.SetLeaves(&eff.Spec) {
		f := api.EffectiveField{Field: path, Value: json.RawMessage("null"), Policy: eff.From[mergeKey[path]]}
		if v, ok := lookupPath(doc, path); ok {
			if f.Value, err = json.Marshal(v); err != nil {
				return out, err
			}
		}
		if p := set.Policies[f.Policy]; p != nil {
			f.Level, f.Sources = levelOf(p), p.Spec.Sources
		}
		out.Fields = append(out.Fields, f)
	}
	return out, nil
}

// lookupPath walks a dotted path through decoded JSON objects.
func lookupPath(doc map[string]any, path string) (any, bool) {
	var cur any = doc
	for _, seg := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// levelOf names a policy's target level.
func levelOf(p *policies.ResiliencePolicy) string {
	t := p.Spec.Target
	switch {
	case t.Service == "*":
		return api.LevelMesh
	case t.Service != "" && t.Route != nil:
		return api.LevelRoute
	case t.Service != "":
		return api.LevelService
	}
	return api.LevelSelector
}

// sourcesFor lists the callers that source-scoped policies applying to
// service name, sorted.
func sourcesFor(set *policies.Set, service string) []string {
	var labels map[string]string
	if svc := set.Services[service]; svc != nil {
		labels = svc.Metadata.Labels
	}
	out := []string{}
	for _, p := range set.Policies {
		for _, src := range p.Spec.Sources {
			if !slices.Contains(out, src) && (p.Matches(src, service, labels, "") || targetsRoutesOf(p, service)) {
				out = append(out, src)
			}
		}
	}
	slices.Sort(out)
	return out
}

// targetsRoutesOf reports whether p targets one route of service.
func targetsRoutesOf(p *policies.ResiliencePolicy, service string) bool {
	return p.Spec.Target.Service == service && p.Spec.Target.Route != nil
}
