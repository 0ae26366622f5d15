package controlplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	xdsgrpc "google.golang.org/grpc/xds"

	"github.com/bulwarkmesh/bulwark/store/storetest"
)

// pki is a test CA with the files of a server and a client certificate.
type pki struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
	pool                                                 *x509.CertPool
}

type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newIssuer(t *testing.T, name string) issuer {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return issuer{cert: cert, key: key}
}

// issue writes a certificate signed by ca and its key to dir/name.{crt,key}.
func (ca issuer) issue(t *testing.T, dir, name string, usage x509.ExtKeyUsage) (string, string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile := writeFile(t, dir, name+".crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	keyFile := writeFile(t, dir, name+".key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})))
	return certFile, keyFile
}

func newPKI(t *testing.T) pki {
	dir := t.TempDir()
	ca := newIssuer(t, "bulwark test CA")
	p := pki{caFile: writeFile(t, dir, "ca.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})))}
	p.serverCert, p.serverKey = ca.issue(t, dir, "server", x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = ca.issue(t, dir, "client", x509.ExtKeyUsageClientAuth)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca.cert)
	return p
}

// adsRequest opens an ADS stream with creds and asks for listeners; it
// returns the first response's error.
func adsRequest(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	err = stream.Send(&discoveryv3.DiscoveryRequest{
		Node:    &corev3.Node{Id: "tls-probe", Cluster: "checkout", UserAgentName: "envoy"},
		TypeUrl: resourcev3.ListenerType,
	})
	if err != nil {
		return err
	}
	_, err = stream.Recv()
	return err
}

// With --tls-cert/--tls-key the API speaks HTTPS and the xDS port TLS; with
// --xds-client-ca, xDS clients without a certificate from that CA are
// refused while gRPC's own xDS client with one gets its config.
func TestAPITLSAndXDSMutualTLS(t *testing.T) {
	p := newPKI(t)
	srv := storetest.NewServer(t)
	cp, err := New(Config{
		XDSAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", EtcdEndpoints: srv.Endpoints(), Replica: "tls",
		TLSCert: p.serverCert, TLSKey: p.serverKey, XDSClientCA: p.caFile,
		Debounce: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, cp.Start(ctx))
	t.Cleanup(func() { cancel(); cp.Stop() })

	// HTTPS, verified against the test CA.
	httpsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool}}}
	base := "https://" + cp.AdminAddr()
	eventually(t, 15*time.Second, func() error {
		resp, err := httpsClient.Get(base + "/health/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("ready: %d", resp.StatusCode)
		}
		return nil
	})
	b := startBackend(t, "tls-backend", nil)
	resp, err := httpsClient.Post(base+"/v1/apply", "application/yaml", strings.NewReader(serviceYAML("payments", b.port)))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)

	plain, err := http.Get("http://" + cp.AdminAddr() + "/health/live")
	if err == nil {
		plain.Body.Close()
		require.Equal(t, http.StatusBadRequest, plain.StatusCode, "plain HTTP to the HTTPS port")
	}
	_, err = (&http.Client{Timeout: 5 * time.Second}).Get(base + "/health/live")
	require.ErrorContains(t, err, "certificate", "a client that does not trust the CA is refused")

	// xDS over mTLS: a client certificate of the CA gets config; none, or
	// one from another CA, is refused.
	cert, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	require.NoError(t, err)
	withCert := credentials.NewTLS(&tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{cert}})
	require.NoError(t, adsRequest(t, cp.XDSAddr(), withCert))

	err = adsRequest(t, cp.XDSAddr(), credentials.NewTLS(&tls.Config{RootCAs: p.pool}))
	require.Error(t, err, "no client certificate")
	other := newIssuer(t, "another CA")
	otherCert, otherKey := other.issue(t, t.TempDir(), "stranger", x509.ExtKeyUsageClientAuth)
	stranger, err := tls.LoadX509KeyPair(otherCert, otherKey)
	require.NoError(t, err)
	require.Error(t, adsRequest(t, cp.XDSAddr(), credentials.NewTLS(&tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{stranger}})), "a certificate of another CA")
	require.Error(t, adsRequest(t, cp.XDSAddr(), insecure.NewCredentials()), "plaintext")

	// gRPC's xDS client with TLS channel credentials from its bootstrap.
	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "tls", "config": {"ca_certificate_file": %q, "certificate_file": %q, "private_key_file": %q}}], "server_features": ["xds_v3"]}],
		"node": {"id": "checkout-tls", "cluster": "checkout", "locality": {"zone": "z1"}}
	}`, cp.XDSAddr(), p.caFile, p.clientCert, p.clientKey)
	res, err := xdsgrpc.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	require.NoError(t, err)
	cc, err := grpc.NewClient("xds:///payments", grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(res))
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	client := testgrpc.NewTestServiceClient(cc)
	eventually(t, 15*time.Second, func() error {
		host, err := call(client, time.Second, "x")
		if err != nil {
			return err
		}
		if host != "tls-backend" {
			return fmt.Errorf("served by %q", host)
		}
		return nil
	})
}
