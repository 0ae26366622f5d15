package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrOutcomeUnknown marks a write whose request went to etcd and that
// failed without an answer saying whether it was committed (a deadline
// passed or the connection broke mid-commit, a leader was lost while the
// proposal was in flight): it may or may not have been applied. Test for it
// with errors.Is; read the value back before retrying.
var ErrOutcomeUnknown = errors.New("the outcome is unknown: the write may or may not have been committed")

// Unreachable reports whether err means that etcd did not answer: no
// connection, no leader, a deadline. etcd 3.4 returns a leaderless
// request's server-side timeout as gRPC code Unknown with the message
// "context deadline exceeded" (it does not map the context error to a
// code), so that shape counts too.
func Unreachable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpctypes.ErrTimeout) ||
		errors.Is(err, rpctypes.ErrNoLeader) || errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail) ||
		errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost) || errors.Is(err, rpctypes.ErrLeaderChanged) ||
		errors.Is(err, rpctypes.ErrGRPCNoLeader) || errors.Is(err, rpctypes.ErrGRPCTimeout) {
		return true
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if s, ok := status.FromError(e); ok {
			switch s.Code() {
			case codes.Unavailable, codes.DeadlineExceeded:
				return true
			case codes.Unknown:
				if strings.Contains(s.Message(), context.DeadlineExceeded.Error()) {
					return true
				}
			}
		}
	}
	return false
}

// refused reports whether etcd refused a request before proposing it, so
// that nothing was written: it had no leader to propose to.
func refused(err error) bool {
	if errors.Is(err, rpctypes.ErrNoLeader) || errors.Is(err, rpctypes.ErrGRPCNoLeader) {
		return true
	}
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.Unavailable && strings.Contains(s.Message(), rpctypes.ErrNoLeader.Error())
}

// writeError wraps the error of a write sent to etcd: when etcd did not
// answer and did not refuse it, the write may have been committed, and the
// error also matches ErrOutcomeUnknown.
func writeError(err error) error {
	if Unreachable(err) && !refused(err) {
		return fmt.Errorf("%w (%w)", err, ErrOutcomeUnknown)
	}
	return err
}
