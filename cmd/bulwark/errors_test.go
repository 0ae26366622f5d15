package main

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// A busy port stops the start with an error that names the flag to change,
// and says "embedded etcd" once.
func TestBusyPortNamesTheFlag(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	addr := busy.Addr().String()
	for _, tc := range []struct{ flag string }{
		{"--embedded-etcd-listen"},
		{"--embedded-etcd-peer"},
		{"--xds-addr"},
		{"--admin-addr"},
	} {
		t.Run(tc.flag, func(t *testing.T) {
			args := map[string]string{
				"--xds-addr": freePort(t), "--admin-addr": freePort(t),
				"--embedded-etcd-listen": freePort(t), "--embedded-etcd-peer": freePort(t),
			}
			args[tc.flag] = addr
			argv := []string{"--data-dir", t.TempDir(), "--log-level", "error"}
			for f, a := range args {
				argv = append(argv, f, a)
			}
			var stderr bytes.Buffer
			require.Equal(t, 1, run(argv, io.Discard, &stderr))
			last := lastLine(stderr.String())
			require.Contains(t, last, tc.flag+" "+addr+" is in use", stderr.String())
			require.Contains(t, last, "choose another address with "+tc.flag)
			require.NotContains(t, stderr.String(), "embedded etcd: embedded etcd:")
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestVersionFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"--version"}, &stdout, &stderr), stderr.String())
	require.Regexp(t, `^bulwark \S+ \(.*go1\.\d+.*\)\n$`, stdout.String())
}
