package adminapi_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bulwarkmesh/bulwark/controlplane/adminapi"
	"github.com/bulwarkmesh/bulwark/controlplane/api"
	"github.com/bulwarkmesh/bulwark/controlplane/apply"
	"github.com/bulwarkmesh/bulwark/policies"
	"github.com/bulwarkmesh/bulwark/store"
)

// leaderlessKV answers every read as etcd 3.4 does when its linearizable
// read waits for a leader until the request's deadline: etcd 3.4 returns
// the context's error as is, which its gRPC (1.26) sent as code Unknown
// with the message "context deadline exceeded" (newer gRPC and etcd 3.5
// map it to DeadlineExceeded), so the answer is built as it arrived.
type leaderlessKV struct{ pb.UnimplementedKVServer }

func (leaderlessKV) Range(context.Context, *pb.RangeRequest) (*pb.RangeResponse, error) {
	return nil, status.Error(codes.Unknown, context.DeadlineExceeded.Error())
}

// Defect 4 of issue 10: that error shape is "store unreachable", a 503,
// which bulwarkctl turns into exit 3; it was a 500 "internal".
func TestAPIEtcd34DeadlineShape(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer()
	pb.RegisterKVServer(gs, leaderlessKV{})
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://" + lis.Addr().String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	require.NoError(t, err)
	t.Cleanup(func() { cli.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st := store.New(cli, store.Options{Logger: log})
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	s := adminapi.New(adminapi.Deps{
		Store: st, Applier: apply.New(st, policies.ValidateOptions{}),
		Fleet: &fakeFleet{}, Builds: &fakeBuilds{}, Health: &fakeHealth{ready: api.Readiness{Ready: true}, storeUp: true},
		Metrics: http.NotFoundHandler(), Replica: "test", Logger: log,
	})
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	e := &env{url: hs.URL, client: hs.Client(), st: st}

	p := problem(t, e.do(t, http.MethodPut, "/v1/services/payments", "", "application/yaml", serviceYAML("9001")), http.StatusServiceUnavailable, api.ProblemStoreUnavailable)
	require.Contains(t, p.Detail, "code = Unknown desc = context deadline exceeded", "the shape under test")
	problem(t, e.do(t, http.MethodGet, "/v1/services", "", "", ""), http.StatusServiceUnavailable, api.ProblemStoreUnavailable)
}
