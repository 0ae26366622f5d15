package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"

	"github.com/bulwarkmesh/bulwark/policies"
)

// Values of render --experiments.
const (
	experimentsAll     = "all"
	experimentsNone    = "none"
	experimentsRunning = "running"
)

// selectExperiments leaves in set the experiments that --experiments asks
// for. Files cannot say whether an experiment is running: it runs for
// spec.duration from when it was applied, and a directory sync runs a
// declared game day once. "running" asks the server and keeps the
// experiments it runs now with the same spec, so that render shows what
// the server serves; an experiment left out is named on stderr. It returns
// an exit code and false when the server cannot answer.
func (e *env) selectExperiments(set *policies.Set, mode string) (int, bool) {
	switch mode {
	case experimentsNone:
		for name := range set.Experiments {
			set.Remove(policies.KindExperiment, name)
		}
		return exitOK, true
	case experimentsAll:
		return exitOK, true
	}
	if len(set.Experiments) == 0 {
		return exitOK, true
	}
	c, err := e.newClient()
	if err != nil {
		fmt.Fprintf(e.stderr, "bulwarkctl render: %v\n", err)
		return exitUsage, false
	}
	var list listAnswer
	if err := c.call("GET", "/v1/experiments", "", nil, &list); err != nil {
		return e.fail("render", err), false
	}
	running := map[string]*policies.ChaosExperiment{}
	for _, raw := range list.Items {
		r, err := policies.DecodeStored(json.RawMessage(raw))
		if err != nil {
			return e.fail("render", fmt.Errorf("the server sent an experiment bulwarkctl cannot read: %w", err)), false
		}
		x := r.(*policies.ChaosExperiment)
		running[x.Metadata.Name] = x
	}
	for _, name := range slices.Sorted(maps.Keys(set.Experiments)) {
		on := running[name]
		switch {
		case on == nil:
			fmt.Fprintf(e.stderr, "bulwarkctl render: left out experiment %s: not running on the server (ended, stopped, or never started)\n", name)
		case !reflect.DeepEqual(on.Spec, set.Experiments[name].Spec):
			fmt.Fprintf(e.stderr, "bulwarkctl render: left out experiment %s: the server runs another spec under this name\n", name)
		default:
			continue
		}
		set.Remove(policies.KindExperiment, name)
	}
	return exitOK, true
}
