package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A resource a directory sync owns is refused to apply and delete, with
// the way out; --force changes it.
func TestForceOnWhatASyncOwns(t *testing.T) {
	s := startServer(t)
	r := s.ctl(t, cliPolicy, "apply", "-f", "-", "--source", "dir:/srv/policies")
	require.Equal(t, exitOK, r.code, r.stderr)

	edited := strings.Replace(cliPolicy, "request: 3s", "request: 2s", 1)
	r = s.ctl(t, edited, "apply", "-f", "-")
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, "owned by the directory sync dir:/srv/policies")
	require.Contains(t, r.stderr, "--force")
	r = s.ctl(t, edited, "apply", "-f", "-", "--force")
	require.Equal(t, exitOK, r.code, r.stderr)

	r = s.ctl(t, "", "delete", "policy", "payments")
	require.Equal(t, exitFailed, r.code)
	require.Contains(t, r.stderr, "owned by the directory sync")
	r = s.ctl(t, "", "delete", "policy", "payments", "--force")
	require.Equal(t, exitOK, r.code, r.stderr)
}
