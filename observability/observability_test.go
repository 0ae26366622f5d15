package observability

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"gopkg.in/yaml.v3"

	"github.com/bulwarkmesh/bulwark/controlplane/metrics"
	"github.com/bulwarkmesh/bulwark/controlplane/prom/promtest"
)

var update = flag.Bool("update", false, "rewrite dashboard.json from Rows()")

// dashboard.json is exactly what Dashboard renders.
func TestDashboardIsGenerated(t *testing.T) {
	want, err := Dashboard()
	require.NoError(t, err)
	if *update {
		require.NoError(t, os.WriteFile("dashboard.json", want, 0o644))
	}
	got, err := os.ReadFile("dashboard.json")
	require.NoError(t, err)
	require.Equal(t, string(want), string(got), "dashboard.json is stale: go test ./observability -update")
}

// envoyStats are the Envoy cluster statistics the queries use, as Envoy's
// /stats/prometheus names them (docs: cluster manager statistics). No Envoy
// runs in the tests, so they are listed.
var envoyStats = []string{
	"envoy_cluster_upstream_rq_time_bucket", "envoy_cluster_upstream_rq_time_count", "envoy_cluster_upstream_rq_xx",
	"envoy_cluster_upstream_rq_total", "envoy_cluster_upstream_rq_retry", "envoy_cluster_upstream_rq_retry_overflow",
	"envoy_cluster_upstream_rq_timeout", "envoy_cluster_outlier_detection_ejections_active",
	"envoy_cluster_membership_healthy", "envoy_cluster_membership_total",
}

// otherStats: etcd's leader gauge and Prometheus's own up.
var otherStats = []string{"etcd_server_has_leader", "up"}

// knownMetrics is every metric name a query may use: Bulwark's (from a
// replica's registry), gRPC's (scraped from a real instrumented client
// after one call), Envoy's and etcd's.
func knownMetrics(t *testing.T) map[string]bool {
	known := map[string]bool{}
	m := metrics.New("cds", "eds", "lds", "rds")
	m.CountExperiments(func() int { return 0 })
	m.BuildDuration.Observe(0.01)
	m.Convergence.Observe(0.01)
	fams, err := m.Registry.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		name := f.GetName()
		known[name] = true
		if f.GetType().String() == "HISTOGRAM" {
			known[name+"_bucket"], known[name+"_sum"], known[name+"_count"] = true, true, true
		}
	}
	for _, n := range append(envoyStats, otherStats...) {
		known[n] = true
	}
	// gRPC's OpenTelemetry metrics, as the exporter names them.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(srv, &testService{})
	go srv.Serve(lis)
	defer srv.Stop()
	gm := promtest.NewGRPCMetrics(t)
	cc, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), gm.DialOption())
	require.NoError(t, err)
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = testgrpc.NewTestServiceClient(cc).UnaryCall(ctx, &testgrpc.SimpleRequest{})
	require.NoError(t, err)
	resp, err := http.Get("http://" + gm.Addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	grpcNames := 0
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		if strings.HasPrefix(name, "grpc_") {
			known[name] = true
			grpcNames++
		}
	}
	require.Positive(t, grpcNames, "the gRPC client exported no grpc_ metric")
	return known
}

type testService struct {
	testgrpc.UnimplementedTestServiceServer
}

func (testService) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return &testgrpc.SimpleResponse{}, nil
}

// checkQuery parses a query as Grafana would send it and returns the
// metric names it selects that no exporter has.
func checkQuery(t *testing.T, known map[string]bool, where, expr string) {
	t.Helper()
	e := strings.NewReplacer("$__rate_interval", "5m", "$service", "payments").Replace(expr)
	node, err := parser.NewParser(parser.Options{}).ParseExpr(e)
	require.NoError(t, err, "%s: %s", where, expr)
	names := 0
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names++
			require.True(t, known[vs.Name], "%s: %s is not a metric Bulwark, Envoy, gRPC or etcd exports", where, vs.Name)
		}
		return nil
	})
	require.Positive(t, names, "%s: selects no metric", where)
}

// Every panel's, the annotation's and every alert's PromQL parses and
// names only metrics that exist.
func TestEveryQueryParsesAndNamesARealMetric(t *testing.T) {
	known := knownMetrics(t)
	panels := 0
	for _, row := range Rows() {
		for _, p := range row.Panels {
			panels++
			require.NotEmpty(t, p.Description, "panel %s has no description", p.Title)
			for _, q := range p.Queries {
				checkQuery(t, known, "panel "+p.Title, q.Expr)
			}
		}
	}
	require.GreaterOrEqual(t, panels, 14)
	checkQuery(t, known, "annotation", Annotation.Expr)
	checkQuery(t, known, "variable", strings.TrimSuffix(strings.TrimPrefix(ServiceVariable, "label_values("), ", envoy_cluster_name)"))
	for _, r := range alertRules(t) {
		checkQuery(t, known, "alert "+r.Alert, r.Expr)
	}
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func alertRules(t *testing.T) []rule {
	data, err := os.ReadFile("alerts.yaml")
	require.NoError(t, err)
	var doc struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&doc))
	var out []rule
	for _, g := range doc.Groups {
		out = append(out, g.Rules...)
	}
	require.NotEmpty(t, out)
	return out
}

const runbookURL = "https://github.com/bulwarkmesh/bulwark/blob/main/docs/runbooks/"

// Every alert has a severity, a summary and a runbook_url naming a file of
// docs/runbooks/, and every runbook is named by an alert.
func TestEveryAlertHasARunbook(t *testing.T) {
	named := map[string]bool{}
	for _, r := range alertRules(t) {
		require.Contains(t, []string{"critical", "warning"}, r.Labels["severity"], r.Alert)
		require.NotEmpty(t, r.Annotations["summary"], r.Alert)
		u := r.Annotations["runbook_url"]
		file, ok := strings.CutPrefix(u, runbookURL)
		require.True(t, ok, "%s: runbook_url %q is not under %s", r.Alert, u, runbookURL)
		_, err := os.Stat(filepath.Join("..", "docs", "runbooks", file))
		require.NoError(t, err, "%s: its runbook docs/runbooks/%s does not exist", r.Alert, file)
		named[file] = true
	}
	books, err := filepath.Glob("../docs/runbooks/*.md")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(books), 10)
	for _, b := range books {
		if filepath.Base(b) == "README.md" {
			continue
		}
		require.True(t, named[filepath.Base(b)], "no alert names the runbook %s", b)
	}
}

// promtool (Debian's prometheus package, installed by make deps) accepts
// the rules and the example configuration, and the rules pass their unit
// tests.
func TestPromtool(t *testing.T) {
	bin, err := exec.LookPath("promtool")
	require.NoError(t, err, "promtool is not installed: make deps installs Debian's prometheus package")
	for _, args := range [][]string{{"check", "rules", "alerts.yaml"}, {"test", "rules", "alerts_test.yaml"}, {"check", "config", "prometheus.yml"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
		require.Contains(t, string(out), "SUCCESS")
	}
}
