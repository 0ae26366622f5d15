package controlplane

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startTLSEtcd starts an etcd that serves clients over TLS only and
// requires a client certificate signed by p's CA.
func startTLSEtcd(t *testing.T, p pki) string {
	t.Helper()
	ec := embed.NewConfig()
	ec.Name = "tls"
	ec.Dir = t.TempDir()
	ec.ListenClientUrls = []url.URL{{Scheme: "https", Host: "127.0.0.1:0"}}
	ec.AdvertiseClientUrls = ec.ListenClientUrls
	ec.ListenPeerUrls = []url.URL{{Scheme: "http", Host: "127.0.0.1:0"}}
	ec.AdvertisePeerUrls = []url.URL{{Scheme: "http", Host: "127.0.0.1:2380"}}
	ec.InitialCluster = "tls=http://127.0.0.1:2380"
	ec.ClientTLSInfo.CertFile, ec.ClientTLSInfo.KeyFile = p.serverCert, p.serverKey
	ec.ClientTLSInfo.TrustedCAFile = p.caFile
	ec.ClientTLSInfo.ClientCertAuth = true
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	ec.UnsafeNoFsync = true
	e, err := embed.StartEtcd(ec)
	require.NoError(t, err)
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd not ready")
	}
	return "https://" + e.Clients[0].Addr().String()
}

// --etcd-ca, --etcd-cert and --etcd-key reach an external etcd that
// requires TLS and a client certificate; without them nothing is read or
// written and readiness fails.
func TestExternalEtcdOverTLS(t *testing.T) {
	p := newPKI(t)
	endpoint := startTLSEtcd(t, p)
	start := func(cfg Config) *ControlPlane {
		cfg.XDSAddr, cfg.AdminAddr, cfg.EtcdEndpoints = "127.0.0.1:0", "127.0.0.1:0", []string{endpoint}
		cfg.StoreGrace = time.Second
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		cp, err := New(cfg)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		require.NoError(t, cp.Start(ctx))
		t.Cleanup(func() { cancel(); cp.Stop() })
		return cp
	}
	cp := start(Config{Replica: "tls", EtcdCA: p.caFile, EtcdCert: p.clientCert, EtcdKey: p.clientKey})
	h := &harness{t: t, cp: cp, store: cp.Store()}
	h.waitReady()
	h.apply(serviceYAML("payments", 8080))
	code, body := h.get("/v1/services/payments")
	require.Equal(t, 200, code, "%s", body)

	// Without the flags the client neither trusts etcd's certificate nor
	// presents one: readiness fails on the store, past the grace period.
	plain := &harness{t: t, cp: start(Config{Replica: "no-tls"})}
	require.Eventually(t, func() bool {
		code, body := plain.get("/health/ready")
		return code == 503 && strings.Contains(string(body), "grace period")
	}, 20*time.Second, 100*time.Millisecond, "readiness without etcd TLS never failed on the store")
}

func TestEtcdTLSFlagsAreChecked(t *testing.T) {
	for cfg, want := range map[*Config]string{
		{EtcdEndpoints: []string{"https://etcd:2379"}, EtcdCert: "c.crt"}: "--etcd-cert and --etcd-key go together",
		{EtcdEndpoints: []string{"https://etcd:2379"}, EtcdKey: "c.key"}:  "--etcd-cert and --etcd-key go together",
		{EtcdCA: "ca.crt"}: "need --etcd-endpoints",
	} {
		err := cfg.withDefaults().Validate()
		require.Error(t, err)
		require.True(t, strings.Contains(err.Error(), want), "%v, want %q", err, want)
	}
	require.NoError(t, Config{EtcdEndpoints: []string{"https://etcd:2379"}, EtcdCA: "ca.crt", EtcdCert: "c.crt", EtcdKey: "c.key"}.withDefaults().Validate())
}
