package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/bulwarkmesh/bulwark/controlplane"
)

// config is what one demo runs with; flags fill it (see main.go).
type config struct {
	DataDir     string // etcd/, bulwark.log and the two bootstraps
	XDSAddr     string
	AdminAddr   string
	EtcdListen  string
	EtcdPeer    string
	ControlAddr string // the demo's own endpoint: stats and upstream controls
	// UpstreamPort is the first upstream's port, the others follow; 0
	// gives each a free port.
	UpstreamPort int
	Rate         int           // calls per second, per caller
	Deadline     time.Duration // the callers' own deadline per call
	Window       time.Duration // the span the readout's numbers cover
	// EnvoyListener, when set, adds a caller of catalog through an Envoy
	// sidecar's outbound listener at this address.
	EnvoyListener string
	Logger        *slog.Logger
	// dialWith, when set, gives the gRPC callers' dial options for the
	// bootstrap the demo wrote. Unset, gRPC reads GRPC_XDS_BOOTSTRAP, as an
	// application would.
	dialWith func(bootstrap []byte) ([]grpc.DialOption, error)
}

// The demo mesh. checkout is the caller: its proxyless gRPC client calls
// payments and inventory; with Envoy, its sidecar calls catalog (HTTP).
// payments-static is payments' fallback once a policy names it.
var meshUpstreams = []struct{ name, service, protocol string }{
	{"payments-1", "payments", "grpc"},
	{"payments-2", "payments", "grpc"},
	{"payments-3", "payments", "grpc"},
	{"payments-static-1", "payments-static", "grpc"},
	{"inventory-1", "inventory", "grpc"},
	{"inventory-2", "inventory", "grpc"},
	{"catalog-1", "catalog", "http"},
	{"catalog-2", "catalog", "http"},
}

// callerService is the service the demo's callers belong to (node.cluster).
const callerService = "checkout"

// demo is one running demo: a control plane, the upstreams, the callers and
// the control endpoint.
type demo struct {
	cfg       config
	cp        *controlplane.ControlPlane
	upstreams []*upstream
	callers   []*caller
	control   *http.Server
	controlLn net.Listener

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startDemo starts every part, in order, and stops what it started if a
// later part fails.
func startDemo(ctx context.Context, cfg config) (_ *demo, err error) {
	d := &demo{cfg: cfg}
	defer func() {
		if err != nil {
			d.stop()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	// Every demo starts from the same state: the store of the last one goes.
	if err := os.RemoveAll(filepath.Join(cfg.DataDir, "etcd")); err != nil {
		return nil, err
	}
	d.cp, err = controlplane.New(controlplane.Config{
		XDSAddr: cfg.XDSAddr, AdminAddr: cfg.AdminAddr,
		DataDir: filepath.Join(cfg.DataDir, "etcd"), EmbeddedEtcdListen: cfg.EtcdListen, EmbeddedEtcdPeer: cfg.EtcdPeer,
		Replica: "demo", Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	if err := d.cp.Start(ctx); err != nil {
		d.cp = nil
		return nil, fmt.Errorf("control plane: %w", err)
	}
	for i, m := range meshUpstreams {
		port := 0
		if cfg.UpstreamPort != 0 {
			port = cfg.UpstreamPort + i
		}
		u, err := startUpstream(m.name, m.service, m.protocol, port, cfg.Window)
		if err != nil {
			return nil, err
		}
		d.upstreams = append(d.upstreams, u)
	}
	if err := d.applyMesh(ctx); err != nil {
		return nil, err
	}
	grpcBoot, envoyBoot := bootstraps(d.cp.XDSAddr(), cfg.DataDir)
	for name, body := range map[string]string{"grpc-bootstrap.json": grpcBoot, "envoy-bootstrap.yaml": envoyBoot} {
		if err := os.WriteFile(filepath.Join(cfg.DataDir, name), []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	var opts []grpc.DialOption
	if cfg.dialWith != nil {
		if opts, err = cfg.dialWith([]byte(grpcBoot)); err != nil {
			return nil, err
		}
	}
	for _, svc := range []string{"payments", "inventory"} {
		c, err := newGRPCCaller(svc, cfg.Rate, cfg.Deadline, cfg.Window, opts...)
		if err != nil {
			return nil, err
		}
		d.callers = append(d.callers, c)
	}
	if cfg.EnvoyListener != "" {
		d.callers = append(d.callers, newHTTPCaller("catalog", cfg.EnvoyListener, cfg.Rate, cfg.Deadline, cfg.Window))
	}
	if d.controlLn, err = net.Listen("tcp", cfg.ControlAddr); err != nil {
		return nil, fmt.Errorf("--control-addr: %w", err)
	}
	d.control = &http.Server{Handler: d.controlHandler(), ReadHeaderTimeout: 5 * time.Second}
	var cctx context.Context
	cctx, d.cancel = context.WithCancel(ctx)
	for _, c := range d.callers {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			c.run(cctx)
		}()
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		_ = d.control.Serve(d.controlLn)
	}()
	return d, nil
}

// stop ends the callers, the control endpoint, the upstreams and the
// control plane, and waits for all of them: no goroutine and no port is
// left behind.
func (d *demo) stop() {
	if d.cancel != nil {
		d.cancel()
	}
	if d.control != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = d.control.Shutdown(sctx)
		cancel()
	} else if d.controlLn != nil {
		d.controlLn.Close()
	}
	d.wg.Wait()
	for _, c := range d.callers {
		c.close()
	}
	for _, u := range d.upstreams {
		u.close()
	}
	if d.cp != nil {
		d.cp.Stop()
	}
}

// meshYAML is the demo mesh's Service resources, with the upstreams' ports.
func (d *demo) meshYAML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: bulwark/v1\nkind: Service\nmetadata: {name: %s}\nspec:\n  protocol: grpc\n  port: 50051\n  dependencies: [payments, inventory, catalog]\n", callerService)
	for _, svc := range []string{"payments", "payments-static", "inventory", "catalog"} {
		proto, port := "grpc", 50051
		var eps []string
		for _, u := range d.upstreams {
			if u.service == svc {
				proto = u.protocol
				eps = append(eps, fmt.Sprintf("    - {address: 127.0.0.1, port: %d, zone: z1}\n", u.port))
			}
		}
		if proto == "http" {
			port = 8080
		}
		fmt.Fprintf(&b, "---\napiVersion: bulwark/v1\nkind: Service\nmetadata: {name: %s}\nspec:\n  protocol: %s\n  port: %d\n  dependencies: []\n  endpoints:\n%s", svc, proto, port, strings.Join(eps, ""))
	}
	return b.String()
}

// applyMesh writes the Services through the admin API, as bulwarkctl apply
// would. No policy: the walkthrough adds them one by one.
func (d *demo) applyMesh(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+d.cp.AdminAddr()+"/v1/apply", bytes.NewBufferString(d.meshYAML()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/yaml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("apply the demo mesh: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("apply the demo mesh: %s: %s", resp.Status, body)
	}
	return nil
}

// stats reads every window.
func (d *demo) stats() Stats {
	s := Stats{Window: d.cfg.Window.Seconds(), Admin: "http://" + d.cp.AdminAddr(), XDS: d.cp.XDSAddr(),
		Policies: d.list("policies"), Experiments: d.list("experiments")}
	for _, c := range d.callers {
		s.Callers = append(s.Callers, callerStats(c.name, c.via, d.cfg.Window, c.win.samples()))
	}
	for _, u := range d.upstreams {
		n := len(u.calls.samples())
		s.Upstreams = append(s.Upstreams, UpstreamStats{
			Name: u.name, Service: u.service, Protocol: u.protocol, Address: fmt.Sprintf("127.0.0.1:%d", u.port),
			State: u.behaviour(), RPS: float64(n) / d.cfg.Window.Seconds(),
		})
	}
	return s
}

// list names the resources of a kind in the control plane, through its
// admin API; nil when it does not answer.
func (d *demo) list(kind string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.cp.AdminAddr()+"/v1/"+kind, nil)
	if err != nil {
		return nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var l struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		} `json:"items"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&l) != nil {
		return nil
	}
	out := []string{}
	for _, it := range l.Items {
		out = append(out, it.Metadata.Name)
	}
	return out
}

// find returns the upstreams a name selects: one instance, or every
// instance of a service.
func (d *demo) find(name string) ([]*upstream, error) {
	var out []*upstream
	for _, u := range d.upstreams {
		if u.name == name || u.service == name {
			out = append(out, u)
		}
	}
	if len(out) == 0 {
		names := make([]string, 0, len(d.upstreams))
		for _, u := range d.upstreams {
			names = append(names, u.name)
		}
		return nil, errors.New("no upstream or service " + name + ": one of " + strings.Join(names, ", ") + ", or a service name")
	}
	return out, nil
}

// bootstraps renders the xDS bootstraps of the callers: gRPC's (read by
// the demo itself through GRPC_XDS_BOOTSTRAP) and an Envoy sidecar's, both
// as node checkout and pointing at the demo's xDS address.
func bootstraps(xdsAddr, dataDir string) (grpcJSON, envoyYAML string) {
	host, port, _ := net.SplitHostPort(xdsAddr)
	grpcJSON = fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {"id": "checkout-demo-grpc", "cluster": %q, "locality": {"zone": "z1"}}
}
`, xdsAddr, callerService)
	envoyYAML = fmt.Sprintf(`# Envoy sidecar of checkout for the Bulwark demo (written by bulwark-demo).
#   envoy -c %s/envoy-bootstrap.yaml
# Outbound HTTP goes to 127.0.0.1:15001 with the Host header naming the service.
node: {id: checkout-demo-envoy, cluster: %s, locality: {zone: z1}}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services: [{envoy_grpc: {cluster_name: bulwark_xds}}]
  lds_config: {ads: {}, resource_api_version: V3}
  cds_config: {ads: {}, resource_api_version: V3}
static_resources:
  clusters:
    - name: bulwark_xds
      type: STATIC
      connect_timeout: 1s
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: {http2_protocol_options: {}}
      load_assignment:
        cluster_name: bulwark_xds
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %q, port_value: %s}}}}]}]
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 9911}}
`, dataDir, callerService, host, port)
	return grpcJSON, envoyYAML
}
