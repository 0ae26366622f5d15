package controlplane

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

	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// MaxEndpointTTL caps the TTL of a self-registration: an instance that
// stops renewing must leave the proxies' endpoints within this time.
const MaxEndpointTTL = time.Hour

// Registration is the body of PUT /v1/services/{service}/endpoints/{instance}.
type Registration struct {
	Address string `json:"address"`
	Port    int    `json:"port"`
	Zone    string `json:"zone,omitempty"`
	Weight  int    `json:"weight,omitempty"`
	// TTLSeconds is the lease: the instance disappears when it is not
	// renewed (POST .../keepalive) within this time.
	TTLSeconds int `json:"ttlSeconds"`
}

// RegistrationResult is the answer to a registration, keepalive or deregistration.
type RegistrationResult struct {
	Service    string             `json:"service"`
	Instance   string             `json:"instance"`
	Endpoint   *policies.Endpoint `json:"endpoint,omitempty"`
	TTLSeconds int64              `json:"ttlSeconds,omitempty"`
	Revision   int64              `json:"revision,omitempty"`
	Action     string             `json:"action"`
}

// EndpointList is the answer of GET /v1/services/{service}/endpoints.
type EndpointList struct {
	Service  string                     `json:"service"`
	Revision int64                      `json:"revision"`
	Items    []store.RegisteredEndpoint `json:"items"`
}

// decodeRegistration decodes a registration strictly (JSON or YAML).
func decodeRegistration(format bodyFormat, body []byte) (Registration, error) {
	var reg Registration
	if format == formatYAML {
		var v any
		if err := yaml.Unmarshal(body, &v); err != nil {
			return reg, invalid("malformed YAML: " + strings.TrimPrefix(err.Error(), "yaml: "))
		}
		js, err := json.Marshal(v)
		if err != nil {
			return reg, invalid("the body must be a mapping of address, port, zone, weight and ttlSeconds")
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
		return reg, invalid("wrong type for "+te.Field, APIViolation{Field: te.Field, Message: "must be " + jsonTypeName(te.Type.Kind().String())})
	case errors.As(err, &te):
		return reg, invalid("the body must be a JSON object with address, port, zone, weight and ttlSeconds")
	case errors.As(err, &se):
		return reg, invalid(fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return reg, invalid("unknown field "+f, APIViolation{Field: f, Message: "unknown field: use address, port, zone, weight and ttlSeconds"})
	}
	return reg, invalid("malformed body: " + err.Error())
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
func validateRegistration(reg Registration, instance string) (policies.Endpoint, error) {
	ep := policies.Endpoint{Address: reg.Address, Port: reg.Port, Zone: reg.Zone, Weight: reg.Weight, Instance: instance}
	var vs []APIViolation
	for _, v := range policies.ValidateEndpoint("", ep) {
		f := strings.TrimPrefix(v.Field, ".")
		if f == "instance" {
			f = "path.instance"
		}
		vs = append(vs, APIViolation{Field: f, Message: v.Message})
	}
	switch {
	case reg.TTLSeconds <= 0:
		vs = append(vs, APIViolation{Field: "ttlSeconds", Message: "required and positive: the instance leaves every proxy when it is not renewed within this time"})
	case time.Duration(reg.TTLSeconds)*time.Second > MaxEndpointTTL:
		vs = append(vs, APIViolation{Field: "ttlSeconds", Message: fmt.Sprintf("at most %d (%s), got %d; renew with POST .../keepalive instead", int(MaxEndpointTTL.Seconds()), MaxEndpointTTL, reg.TTLSeconds)})
	}
	if len(vs) > 0 {
		return ep, invalid(fmt.Sprintf("%d invalid field(s)", len(vs)), vs...)
	}
	return ep, nil
}

func (cp *ControlPlane) registerEndpoint(w http.ResponseWriter, r *http.Request) {
	svc, inst := r.PathValue("service"), r.PathValue("instance")
	if err := checkName("service", svc); err != nil {
		cp.sendError(w, r, err)
		return
	}
	body, format, err := readBody(w, r)
	if err != nil {
		cp.sendError(w, r, err)
		return
	}
	reg, err := decodeRegistration(format, body)
	if err != nil {
		cp.sendError(w, r, err)
		return
	}
	ep, err := validateRegistration(reg, inst)
	if err != nil {
		cp.sendError(w, r, err)
		return
	}
	ctx, cancel := cp.storeCtx(r)
	defer cancel()
	res, err := cp.store.Get(ctx, policies.KindService, svc)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = newProblem(http.StatusNotFound, problemNotFound, fmt.Sprintf("service %q does not exist: declare the Service before its instances register", svc))
		}
		cp.sendError(w, r, err)
		return
	}
	if s := res.(*policies.Service); s.Spec.DNS != "" {
		cp.sendError(w, r, newProblem(http.StatusConflict, problemConflict, fmt.Sprintf("service %q finds its endpoints by DNS (spec.dns %s); registered instances would be ignored", svc, s.Spec.DNS)))
		return
	}
	ttl := time.Duration(reg.TTLSeconds) * time.Second
	rev, err := cp.store.RegisterEndpoint(ctx, svc, inst, ep, ttl)
	if err != nil {
		cp.sendError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, RegistrationResult{Service: svc, Instance: inst, Endpoint: &ep, TTLSeconds: int64(reg.TTLSeconds), Revision: rev, Action: "registered"})
}

// checkInstance refuses path segments that cannot name a registered instance.
func checkInstance(svc, inst string) error {
	if err := checkName("service", svc); err != nil {
		return err
	}
	probe := policies.Endpoint{Address: "127.0.0.1", Port: 1, Instance: inst}
	for _, v := range policies.ValidateEndpoint("", probe) {
		return invalid("instance "+strconv.Quote(inst)+" is not a valid instance name", APIViolation{Field: "path.instance", Message: v.Message})
	}
	return nil
}

func (cp *ControlPlane) keepAliveEndpoint(w http.ResponseWriter, r *http.Request) {
	svc, inst := r.PathValue("service"), r.PathValue("instance")
	if err := checkInstance(svc, inst); err != nil {
		cp.sendError(w, r, err)
		return
	}
	ctx, cancel := cp.storeCtx(r)
	defer cancel()
	ttl, err := cp.store.KeepAliveEndpoint(ctx, svc, inst)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			err = newProblem(http.StatusNotFound, problemNotFound, fmt.Sprintf("instance %s of service %s is not registered (its lease may have ended): register it again with PUT", inst, svc))
		}
		cp.sendError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, RegistrationResult{Service: svc, Instance: inst, TTLSeconds: int64(ttl.Seconds()), Action: "renewed"})
}

func (cp *ControlPlane) deregisterEndpoint(w http.ResponseWriter, r *http.Request) {
	svc, inst := r.PathValue("service"), r.PathValue("instance")
	if err := checkInstance(svc, inst); err != nil {
		cp.sendError(w, r, err)
		return
	}
	ctx, cancel := cp.storeCtx(r)
	defer cancel()
	rev, err := cp.store.DeregisterEndpoint(ctx, svc, inst)
	if err != nil {
		cp.sendError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, RegistrationResult{Service: svc, Instance: inst, Revision: rev, Action: "deregistered"})
}

func (cp *ControlPlane) listEndpoints(w http.ResponseWriter, r *http.Request) {
	svc := r.PathValue("service")
	if err := checkName("service", svc); err != nil {
		cp.sendError(w, r, err)
		return
	}
	ctx, cancel := cp.storeCtx(r)
	defer cancel()
	items, rev, err := cp.store.ListEndpoints(ctx, svc)
	if err != nil {
		cp.sendError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, EndpointList{Service: svc, Revision: rev, Items: items})
}
