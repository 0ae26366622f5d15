package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// MaxEndpointTTL caps the TTL of a self-registration: an instance that
// stops renewing must leave the proxies' endpoints within this time.
const MaxEndpointTTL = time.Hour

// decodeRegistration decodes a registration strictly (JSON or YAML).
func decodeRegistration(format bodyFormat, body []byte) (api.Registration, error) {
	var reg api.Registration
	if format == formatYAML {
		var v any
		if err := yaml.Unmarshal(body, &v); err != nil {
			return reg, api.Invalid("malformed YAML: " + strings.TrimPrefix(err.Error(), "yaml: "))
		}
		js, err := json.Marshal(v)
		if err != nil {
			return reg, api.Invalid("the body must be a mapping of address, port, zone, weight and ttlSeconds")
		}
		body = js
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(&reg)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err == nil {
		return reg, nil
	}
	var (
		te *json.UnmarshalTypeError
		se *json.SyntaxError
	)
	switch {
	case errors.As(err, &te) && te.Field != "":
		return reg, api.Invalid("wrong type for "+te.Field, api.Violation{Field: te.Field, Message: "must be " + jsonTypeName(te.Type.Kind().String())})
	case errors.As(err, &te):
		return reg, api.Invalid("the body must be a JSON object with address, port, zone, weight and ttlSeconds")
	case errors.As(err, &se):
		return reg, api.Invalid(fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return reg, api.Invalid("unknown field "+f, api.Violation{Field: f, Message: "unknown field: use address, port, zone, weight and ttlSeconds"})
	}
	return reg, api.Invalid("malformed body: " + err.Error())
}

func jsonTypeName(kind string) string {
	switch kind {
	case "int", "int64":
		return "an integer"
	case "string":
		return "a string"
	}
	return "a " + kind
}

// validateRegistration checks a registration's fields, all at once.
func validateRegistration(reg api.Registration, instance string) (policies.Endpoint, error) {
	ep := policies.Endpoint{Address: reg.Address, Port: reg.Port, Zone: reg.Zone, Weight: reg.Weight, Instance: instance}
	var vs []api.Violation
	for _, v := range policies.ValidateEndpoint("", ep) {
		f := strings.TrimPrefix(v.Field, ".")
		if f == "instance" {
			f = "path.instance"
		}
		vs = append(vs, api.Violation{Field: f, Message: v.Message})
	}
	switch {
	case reg.TTLSeconds <= 0:
		vs = append(vs, api.Violation{Field: "ttlSeconds", Message: "required and positive: the instance leaves every proxy when it is not renewed within this time"})
	case time.Duration(reg.TTLSeconds)*time.Second > MaxEndpointTTL:
		vs = append(vs, api.Violation{Field: "ttlSeconds", Message: fmt.Sprintf("at most %d (%s), got %d; renew with POST .../keepalive instead", int(MaxEndpointTTL.Seconds()), MaxEndpointTTL, reg.TTLSeconds)})
	}
	if len(vs) > 0 {
		return ep, api.Invalid(fmt.Sprintf("%d invalid field(s)", len(vs)), vs...)
	}
	return ep, nil
}

func (s *Server) registerEndpoint(w http.ResponseWriter, r *http.Request) {
	svc, inst := r.PathValue("service"), r.PathValue("instance")
	if err := checkName("service", svc); err != nil {
		s.sendError(w, r, err)
		return
	}
	body, format, err := readBody(w, r)
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	reg, err := decodeRegistration(format, body)
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	ep, err := validateRegistration(reg, inst)
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	res, err := s.Store.Get(ctx, policies.KindService, svc)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = api.NewProblem(http.StatusNotFound, api.ProblemNotFound, fmt.Sprintf("service %q does not exist: declare the Service before its instances register", svc))
		}
		s.sendError(w, r, err)
		return
	}
	if sv := res.(*policies.Service); sv.Spec.DNS != "" {
		s.sendError(w, r, api.NewProblem(http.StatusConflict, api.ProblemConflict, fmt.Sprintf("service %q finds its endpoints by DNS (spec.dns %s); registered instances would be ignored", svc, sv.Spec.DNS)))
		return
	}
	ttl := time.Duration(reg.TTLSeconds) * time.Second
	rev, err := s.Store.RegisterEndpoint(ctx, svc, inst, ep, ttl)
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.RegistrationResult{Service: svc, Instance: inst, Endpoint: &ep, TTLSeconds: int64(reg.TTLSeconds), Revision: rev, Action: "registered"})
}

// checkInstance refuses path segments that cannot name a registered instance.
func checkInstance(svc, inst string) error {
	if err := checkName("service", svc); err != nil {
		return err
	}
	probe := policies.Endpoint{Address: "127.0.0.1", Port: 1, Instance: inst}
	for _, v := range policies.ValidateEndpoint("", probe) {
		return api.Invalid("instance "+strconv.Quote(inst)+" is not a valid instance name", api.Violation{Field: "path.instance", Message: v.Message})
	}
	return nil
}

func (s *Server) keepAliveEndpoint(w http.ResponseWriter, r *http.Request) {
	svc, inst := r.PathValue("service"), r.PathValue("instance")
	if err := checkInstance(svc, inst); err != nil {
		s.sendError(w, r, err)
		return
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	ttl, err := s.Store.KeepAliveEndpoint(ctx, svc, inst)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = api.NewProblem(http.StatusNotFound, api.ProblemNotFound, fmt.Sprintf("instance %s of service %s is not registered (its lease may have ended): register it again with PUT", inst, svc))
		}
		s.sendError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.RegistrationResult{Service: svc, Instance: inst, TTLSeconds: int64(ttl.Seconds()), Action: "renewed"})
}

func (s *Server) deregisterEndpoint(w http.ResponseWriter, r *http.Request) {
	svc, inst := r.PathValue("service"), r.PathValue("instance")
	if err := checkInstance(svc, inst); err != nil {
		s.sendError(w, r, err)
		return
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	rev, err := s.Store.DeregisterEndpoint(ctx, svc, inst)
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.RegistrationResult{Service: svc, Instance: inst, Revision: rev, Action: "deregistered"})
}

func (s *Server) listEndpoints(w http.ResponseWriter, r *http.Request) {
	svc := r.PathValue("service")
	if err := checkName("service", svc); err != nil {
		s.sendError(w, r, err)
		return
	}
	ctx, cancel := s.storeCtx(r)
	defer cancel()
	items, rev, err := s.Store.ListEndpoints(ctx, svc)
	if err != nil {
		s.sendError(w, r, err)
		return
	}
	out := make([]api.RegisteredEndpoint, len(items))
	for i, it := range items {
		out[i] = api.RegisteredEndpoint{Service: it.Service, Endpoint: it.Endpoint, Revision: it.Revision, TTLSeconds: it.TTLSeconds}
	}
	writeJSON(w, http.StatusOK, api.EndpointList{Service: svc, Revision: rev, Items: out})
}
