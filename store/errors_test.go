package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Which errors mean etcd did not answer, and which writes may have been
// committed all the same. The shapes are those etcd returns (defect 4 of
// issue 10: etcd 3.4's leaderless timeout is code Unknown with the context
// error's message).
func TestUnreachableAndOutcome(t *testing.T) {
	for _, tc := range []struct {
		name        string
		err         error
		unreachable bool
		unknown     bool // the outcome of a write failing so
	}{
		{"etcd 3.4 leaderless timeout", status.Error(codes.Unknown, "context deadline exceeded"), true, true},
		{"wrapped", fmt.Errorf("load: %w", status.Error(codes.Unknown, "context deadline exceeded")), true, true},
		{"client deadline", context.DeadlineExceeded, true, true},
		{"connection reset", status.Error(codes.Unavailable, "error reading from server: connection reset by peer"), true, true},
		{"request timed out", rpctypes.ErrTimeout, true, true},
		{"no leader", rpctypes.ErrNoLeader, true, false},
		{"no leader, as gRPC", rpctypes.ErrGRPCNoLeader, true, false},
		{"another Unknown", status.Error(codes.Unknown, "something else"), false, false},
		{"a conflict", ErrConflict, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.unreachable, Unreachable(tc.err))
			require.Equal(t, tc.unknown, errors.Is(writeError(tc.err), ErrOutcomeUnknown))
		})
	}
}
