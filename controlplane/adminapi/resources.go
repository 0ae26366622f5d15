package adminapi

import (
	"context"
	"net/http"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/apply"
	"github.com/bulwarkmesh/bulwark/policies"
)

// ResourceList is the answer of GET /v1/{services,policies,experiments}: the
// resources of one kind, sorted by name, read at one store revision.
type ResourceList struct {
	Kind     string              `json:"kind"`
	Revision int64               `json:"revision"`
	Items    []policies.Resource `json:"items"`
}

func (s *Server) listResources(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := s.storeCtx(r)
		defer cancel()
		items, rev, err := s.Store.List(ctx, kind)
		if err != nil {
			s.sendError(w, r, err)
			return
		}
		if items == nil {
			items = []policies.Resource{}
		}
		writeJSON(w, http.StatusOK, api.ResourceList[policies.Resource]{Kind: kind + "List", Revision: rev, Items: items})
	}
}

func (s *Server) getResource(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if err := checkName("name", name); err != nil {
			s.sendError(w, r, err)
			return
		}
		ctx, cancel := s.storeCtx(r)
		defer cancel()
		res, err := s.Store.Get(ctx, kind, name)
		if err != nil {
			s.sendError(w, r, err)
			return
		}
		w.Header().Set("ETag", etag(res.GetMeta().Revision))
		writeJSON(w, http.StatusOK, res)
	}
}

// putResource creates or replaces one resource. If-Match (or a
// metadata.revision in the body) makes it a compare-and-swap.
func (s *Server) putResource(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		body, format, err := readBody(w, r)
		if err != nil {
			s.sendError(w, r, err)
			return
		}
		res, err := parseOne(format, body, kind, name)
		if err == nil {
			err = checkReserved([]policies.Resource{res})
		}
		var gate *preStart
		if err == nil {
			gate, err = s.steadyGate(r, res)
		}
		expect, herr := ifMatch(r)
		if err == nil {
			err = herr
		}
		if err != nil {
			s.sendError(w, r, err)
			return
		}
		if expect == 0 {
			expect = res.GetMeta().Revision
		}
		ctx, cancel, err := s.writeCtx(r)
		if err != nil {
			s.sendError(w, r, err)
			return
		}
		defer cancel()
		out, err := s.Applier.Put(ctx, res, expect, callerOf(r.Context()))
		if err != nil {
			s.sendError(w, r, err)
			return
		}
		if out.Action == api.ActionCreated {
			s.recordPreStart(ctx, gate, res)
		}
		code := http.StatusOK
		if out.Action == api.ActionCreated {
			code = http.StatusCreated
		}
		w.Header().Set("ETag", etag(out.Revision))
		writeJSON(w, code, out)
	}
}

// deleteResource deletes one resource; for an experiment, it stops it.
func (s *Server) deleteResource(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		err := checkName("name", name)
		expect, herr := ifMatch(r)
		if err == nil {
			err = herr
		}
		if err != nil {
			s.sendError(w, r, err)
			return
		}
		ctx, cancel, err := s.writeCtx(r)
		if err != nil {
			s.sendError(w, r, err)
			return
		}
		defer cancel()
		out, err := s.Applier.Delete(ctx, kind, name, expect, callerOf(r.Context()))
		if err != nil {
			s.sendError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

// serveApply answers POST /v1/apply: a bundle written atomically, with
// ?dryRun=true, ?prune=true&source=S and ?source=S.
func (s *Server) serveApply(w http.ResponseWriter, r *http.Request) {
	body, format, err := readBody(w, r)
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	rs, err := parseBody(format, body)
	if err == nil {
		err = checkReserved(rs)
	}
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	dry, err := boolParam(r, "dryRun")
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	prune, err := boolParam(r, "prune")
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	force, err := boolParam(r, "force")
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	source := r.URL.Query().Get("source")
	if msg := policies.CheckSource(source); msg != "" {
		s.sendError(w, r, api.Invalid("query parameter source "+msg, api.Violation{Field: "source", Message: msg}))
		return
	}
	if prune && source == "" {
		s.sendError(w, r, api.Invalid("prune needs a source: it deletes only what that source applied before",
			api.Violation{Field: "source", Message: "required with prune=true"}))
		return
	}
	var gates []*preStart
	for _, res := range rs {
		if dry {
			break
		}
		g, err := s.steadyGate(r, res)
		if err != nil {
			s.sendError(w, r, err)
			return
		}
		if g != nil {
			gates = append(gates, g)
		}
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	res, err := s.Applier.Apply(ctx, apply.Request{Resources: rs, Source: source, Prune: prune, DryRun: dry, Force: force, Who: callerOf(r.Context())})
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	s.recordPreStarts(ctx, gates, rs)
	if res.Warnings == nil {
		res.Warnings = []policies.Finding{}
	}
	writeJSON(w, http.StatusOK, res)
}

// writeCtx is storeCtx for a single write, carrying ?force=true (a change
// of what a directory sync owns) to the applier.
func (s *Server) writeCtx(r *http.Request) (context.Context, context.CancelFunc, error) {
	force, err := boolParam(r, "force")
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := s.storeCtx(r)
	if force {
		ctx = apply.WithForce(ctx)
	}
	return ctx, cancel, nil
}
