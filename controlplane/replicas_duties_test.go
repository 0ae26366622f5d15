package controlplane

import (
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/policies"
)

// leading reads bulwark_leader{duty="sync"} from replica i's /metrics.
func (f *fleetEnv) leading(i int) bool {
	_, body := f.get(i, "/metrics")
	return regexp.MustCompile(`(?m)^bulwark_leader\{duty="sync"\} 1$`).Match(body)
}

// The directory sync is a singleton duty: with --sync-dir on every
// replica, one applies the directory, every replica names it in status,
// and when it dies another takes the duty over and goes on; the declared
// game day runs exactly once through it all.
func TestReplicasSyncDutyRunsOnce(t *testing.T) {
	dir := t.TempDir()
	b := startBackend(t, "payments-1", nil)
	writeFile(t, dir, "services/payments.yaml", serviceYAML("payments", b.port))
	writeFile(t, dir, "game-days/payments.yaml", `apiVersion: bulwark/v1
kind: ChaosExperiment
metadata: {name: payments-game-day}
spec:
  target: {service: payments}
  abort: {percent: 10, grpcStatus: 14}
  duration: 2s
`)
	f := newFleetEnv(t, 3, func(c *Config) { c.SyncDir, c.SyncResync = dir, 200*time.Millisecond })
	ctx := t.Context()

	var leader int
	eventually(t, 20*time.Second, func() error {
		var names []string
		leader = -1
		for i := range f.replicas {
			s, err := f.status(i)
			if err != nil {
				return err
			}
			names = append(names, s.Leaders["sync"])
			if f.leading(i) {
				if leader >= 0 {
					return fmt.Errorf("replicas %d and %d both lead the sync", leader, i)
				}
				leader = i
			}
		}
		if leader < 0 {
			return fmt.Errorf("no replica leads the sync")
		}
		for i, n := range names {
			if n != fmt.Sprintf("r%d", leader) {
				return fmt.Errorf("replica %d names %q as the sync's leader, replica r%d leads", i, n, leader)
			}
		}
		if s, _ := f.status(leader); s.Sync == nil || !s.Sync.OK {
			return fmt.Errorf("the leader has not synced: %+v", s.Sync)
		}
		return nil
	})
	for i := range f.replicas {
		if i != leader {
			s, err := f.status(i)
			require.NoError(t, err)
			require.True(t, s.Sync == nil || s.Sync.LastSync.IsZero(), "replica %d synced without leading: %+v", i, s.Sync)
		}
	}
	st := f.replicas[(leader+1)%3].Store()
	runs := func() int {
		hist, err := st.History(ctx)
		require.NoError(t, err)
		n := 0
		for _, e := range hist {
			if e.Metadata.Name == "payments-game-day" {
				n++
			}
		}
		return n
	}
	eventually(t, 20*time.Second, func() error {
		if n := runs(); n != 1 {
			return fmt.Errorf("%d runs of the game day", n)
		}
		if _, err := st.Get(ctx, policies.KindExperiment, "payments-game-day"); err == nil {
			return fmt.Errorf("the game day is still running")
		}
		return nil
	})

	// The leader dies: another replica takes the duty and applies the next edit.
	f.kill(leader)
	killed := time.Now()
	writeFile(t, dir, "services/payments.yaml", serviceYAML("payments", b.port, b.port+1))
	next := -1
	eventually(t, 30*time.Second, func() error {
		for i := range f.replicas {
			if !f.stopped[i] && f.leading(i) {
				next = i
			}
		}
		if next < 0 {
			return fmt.Errorf("nobody took the sync over")
		}
		svc, err := st.Get(ctx, policies.KindService, "payments")
		if err != nil {
			return err
		}
		if n := len(svc.(*policies.Service).Spec.Endpoints); n != 2 {
			return fmt.Errorf("the edit is not applied: %d endpoints", n)
		}
		return nil
	})
	t.Logf("replica r%d took the sync over and applied an edit %s after r%d died", next, time.Since(killed).Round(time.Millisecond), leader)
	// The new leader's first apply carried the game day too: not again.
	require.Equal(t, 1, runs(), "the game day ran again under the new leader")
}
