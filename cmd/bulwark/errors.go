package main

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/bulwarkmesh/bulwark/controlplane"
)

// explain adds to a start-up error the flag to change when a port is busy:
// the error names the address, the user needs the flag.
func explain(err error, cfg controlplane.Config) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	for _, f := range []struct{ flag, addr string }{
		{"--xds-addr", cfg.XDSAddr},
		{"--admin-addr", cfg.AdminAddr},
		{"--embedded-etcd-listen", cfg.EmbeddedEtcdListen},
		{"--embedded-etcd-peer", cfg.EmbeddedEtcdPeer},
	} {
		if f.addr != "" && strings.Contains(err.Error(), f.addr) {
			return fmt.Errorf("%w; %s %s is in use (another bulwark still running?): stop it, or choose another address with %s", err, f.flag, f.addr, f.flag)
		}
	}
	return err
}
