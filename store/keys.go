package store

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/bulwarkmesh/bulwark/policies"
)

// KindEndpoint is the Change.Kind of a self-registered endpoint.
const KindEndpoint = "Endpoint"

// Directories under <prefix>/v1/.
const (
	dirServices    = "services"
	dirPolicies    = "policies"
	dirExperiments = "experiments"
	dirEndpoints   = "endpoints"
	dirStatus      = "status"
	dirHistory     = "history/experiments"
)

// historyTimeFormat names a run in the history: fixed width, so keys sort by time.
const historyTimeFormat = "2006-01-02T15:04:05.000000000Z"

func kindToDir(kind string) (string, bool) {
	switch kind {
	case policies.KindService:
		return dirServices, true
	case policies.KindPolicy:
		return dirPolicies, true
	case policies.KindExperiment:
		return dirExperiments, true
	}
	return "", false
}

func (s *Store) dir(d string) string { return s.opts.Prefix + "/v1/" + d + "/" }

// kindDir returns the key prefix of a kind, ending in "/".
func (s *Store) kindDir(kind string) (string, error) {
	d, ok := kindToDir(kind)
	if !ok {
		return "", fmt.Errorf("unknown kind %q: use %s, %s or %s", kind, policies.KindService, policies.KindPolicy, policies.KindExperiment)
	}
	return s.dir(d), nil
}

func (s *Store) resourceKey(kind, name string) (string, error) {
	d, err := s.kindDir(kind)
	if err != nil {
		return "", err
	}
	if err := checkSegment("metadata.name", name); err != nil {
		return "", err
	}
	return d + name, nil
}

func (s *Store) endpointKey(service, instance string) (string, error) {
	if err := checkSegment("service", service); err != nil {
		return "", err
	}
	if err := checkSegment("instance", instance); err != nil {
		return "", err
	}
	return s.dir(dirEndpoints) + service + "/" + instance, nil
}

func (s *Store) historyKey(name string, started time.Time) string {
	return s.dir(dirHistory) + name + "/" + started.UTC().Format(historyTimeFormat)
}

func (s *Store) statusKey(replica, node string) (string, error) {
	if replica == "" || node == "" {
		return "", fmt.Errorf("status needs a replica and a node id (got %q, %q)", replica, node)
	}
	return s.dir(dirStatus) + url.PathEscape(replica) + "/" + url.PathEscape(node), nil
}

// checkSegment refuses names that cannot be one key segment. Names are meant
// to be DNS-1123 labels (validated by the policies package); the store only
// makes sure the key layout cannot be broken.
func checkSegment(field, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%s: required", field)
	case strings.ContainsAny(v, "/\x00"):
		return fmt.Errorf("%s: %q must not contain '/'", field, v)
	case v == "." || v == "..":
		return fmt.Errorf("%s: %q is not a name", field, v)
	case len(v) > 253:
		return fmt.Errorf("%s: longer than 253 characters", field)
	}
	return nil
}

// keyRef is what a key under <prefix>/v1/ refers to.
type keyRef struct {
	kind     string // a policies kind, KindEndpoint, or "" for keys a watch ignores
	name     string
	service  string
	instance string
}

// parseKey tells what a key refers to; ok is false for keys outside the
// resource and endpoint directories, or malformed ones.
func (s *Store) parseKey(key string) (keyRef, bool) {
	rest, ok := strings.CutPrefix(key, s.opts.Prefix+"/v1/")
	if !ok {
		return keyRef{}, false
	}
	d, name, ok := strings.Cut(rest, "/")
	if !ok || name == "" {
		return keyRef{}, false
	}
	switch d {
	case dirServices:
		return keyRef{kind: policies.KindService, name: name}, !strings.Contains(name, "/")
	case dirPolicies:
		return keyRef{kind: policies.KindPolicy, name: name}, !strings.Contains(name, "/")
	case dirExperiments:
		return keyRef{kind: policies.KindExperiment, name: name}, !strings.Contains(name, "/")
	case dirEndpoints:
		svc, inst, ok := strings.Cut(name, "/")
		if !ok || svc == "" || inst == "" || strings.Contains(inst, "/") {
			return keyRef{}, false
		}
		return keyRef{kind: KindEndpoint, name: svc + "/" + inst, service: svc, instance: inst}, true
	}
	return keyRef{}, false
}
