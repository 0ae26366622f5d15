package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/bulwarkmesh/bulwark/controlplane"
)

// selfSigned writes a CA-signed server certificate for 127.0.0.1 and
// returns the files of the CA, the certificate and its key.
func selfSigned(t *testing.T) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600))
		return p
	}
	return write("ca.crt", "CERTIFICATE", caDER), write("server.crt", "CERTIFICATE", der), write("server.key", "EC PRIVATE KEY", kb)
}

// --ca-file is a global flag: accepted before the command, where
// docs/security.md puts it, and listed in --help. A plain http:// URL
// against the HTTPS admin port says to use https.
func TestCAFileGlobalAndHTTPHint(t *testing.T) {
	caFile, cert, key := selfSigned(t)
	s := startServer(t, func(c *controlplane.Config) { c.TLSCert, c.TLSKey = cert, key })
	addr := s.cp.AdminAddr()
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(caFile)
	require.NoError(t, err)
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	require.Eventually(t, func() bool {
		resp, err := hc.Get("https://" + addr + "/health/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 15*time.Second, 20*time.Millisecond)

	for _, args := range [][]string{
		{"--server", "https://" + addr, "--ca-file", caFile, "status"}, // before the command
		{"--server", "https://" + addr, "status", "--ca-file", caFile}, // after it
	} {
		r := bulwarkctl(t, "", args...)
		require.Equal(t, exitOK, r.code, "%v: %s", args, r.stderr)
		require.Contains(t, r.stdout, "ready:")
	}
	r := bulwarkctl(t, "", "--server", "http://"+addr, "status")
	require.Equal(t, exitFailed, r.code, r.stderr)
	require.Contains(t, r.stderr, "the server speaks HTTPS: use --server https://"+addr)

	help := bulwarkctl(t, "", "--help")
	require.Contains(t, help.stdout, "--ca-file FILE")
	require.Contains(t, bulwarkctl(t, "", "help", "status").stdout, "-ca-file")
}
