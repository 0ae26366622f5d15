package main

import (
	"context"
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

func addr(u *upstream) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(u.port)) }

// A gRPC upstream answers with its name, fails every call with errors 100,
// holds calls for its latency, refuses connections when down, and answers
// on the same port when it is up again.
func TestGRPCUpstreamControls(t *testing.T) {
	u, err := startUpstream("payments-1", "payments", "grpc", 0, time.Second)
	require.NoError(t, err)
	defer u.close()
	cc, err := grpc.NewClient(addr(u), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer cc.Close()
	client := testgrpc.NewTestServiceClient(cc)
	call := func(timeout time.Duration) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		return resp.GetHostname(), err
	}

	host, err := call(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "payments-1", host)

	require.NoError(t, u.set(Behaviour{Errors: 100}))
	for range 10 {
		_, err := call(5 * time.Second)
		require.Equal(t, codes.Unavailable, status.Code(err), "errors 100%% fails every call: %v", err)
	}

	// A 1-minute latency outlasts a 100ms deadline, whatever the machine's load.
	require.NoError(t, u.set(Behaviour{Latency: time.Minute}))
	_, err = call(100 * time.Millisecond)
	require.Equal(t, codes.DeadlineExceeded, status.Code(err))

	require.NoError(t, u.set(Behaviour{Down: true}))
	_, err = net.Dial("tcp", addr(u))
	require.ErrorIs(t, err, syscall.ECONNREFUSED, "nothing listens on a down upstream's port")

	require.NoError(t, u.set(Behaviour{}))
	require.Eventually(t, func() bool {
		host, err := call(5 * time.Second)
		return err == nil && host == "payments-1"
	}, 30*time.Second, 50*time.Millisecond, "the upstream serves again on its port")
	require.Positive(t, len(u.calls.samples()), "arrivals are counted for the readout")
}

// An HTTP upstream, called by the demo's HTTP caller (the one that goes
// through an Envoy sidecar, here straight to the upstream): 200s, then 503s
// with errors 100, then connection failures when down.
func TestHTTPUpstreamAndCaller(t *testing.T) {
	u, err := startUpstream("catalog-1", "catalog", "http", 0, time.Second)
	require.NoError(t, err)
	defer u.close()
	c := newHTTPCaller("catalog", addr(u), 50, 2*time.Second, time.Second)
	defer c.close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.run(ctx)
	}()
	defer func() { cancel(); <-done }()

	stats := func() CallerStats { return callerStats(c.name, c.via, time.Second, c.win.samples()) }
	require.Eventually(t, func() bool { s := stats(); return s.Calls > 10 && s.Success == 100 }, 30*time.Second, 50*time.Millisecond)
	require.NoError(t, u.set(Behaviour{Errors: 100}))
	require.Eventually(t, func() bool { s := stats(); return s.Calls > 10 && s.Errors["HTTP 503"] == s.Calls }, 30*time.Second, 50*time.Millisecond)
	require.NoError(t, u.set(Behaviour{Down: true}))
	require.Eventually(t, func() bool { s := stats(); return s.Calls > 10 && s.Errors["Unavailable"] == s.Calls }, 30*time.Second, 50*time.Millisecond)
	require.NoError(t, u.set(Behaviour{}))
	require.Eventually(t, func() bool { s := stats(); return s.Calls > 10 && s.Success == 100 }, 30*time.Second, 50*time.Millisecond)
}

// Changes are checked before anything moves.
func TestChangeValidation(t *testing.T) {
	str := func(s string) *string { return &s }
	num := func(f float64) *float64 { return &f }
	for _, tc := range []struct {
		c    change
		want string
	}{
		{change{Latency: str("fast")}, `latency: want a duration between 0 and 1m0s, such as 500ms, got "fast"`},
		{change{Latency: str("-1s")}, "latency: want a duration"},
		{change{Latency: str("2m")}, "latency: want a duration"},
		{change{Errors: num(101)}, "errors: want a percentage between 0 and 100, got 101"},
		{change{Errors: num(-1)}, "errors: want a percentage"},
	} {
		_, err := tc.c.apply(Behaviour{})
		require.ErrorContains(t, err, tc.want)
	}
	b, err := change{Latency: str("0"), Errors: num(5)}.apply(Behaviour{Latency: time.Second, Down: true})
	require.NoError(t, err)
	require.Equal(t, Behaviour{Errors: 5, Down: true}, b)
	b, err = change{Reset: true}.apply(b)
	require.NoError(t, err)
	require.Equal(t, "ok", b.String())
	require.Equal(t, "latency 1.5s, errors 50%", Behaviour{Latency: 1500 * time.Millisecond, Errors: 50}.String())
	require.False(t, errors.Is(err, errUnreachable))
}

// Nearest-rank percentiles and the readout's formats.
func TestPercentilesAndFormats(t *testing.T) {
	var ss []sample
	for i := 1; i <= 100; i++ {
		ss = append(ss, sample{latency: time.Duration(i) * time.Millisecond})
	}
	ss[0].code, ss[1].code, ss[2].code = "Unavailable", "Unavailable", "DeadlineExceeded"
	st := callerStats("payments", "proxyless gRPC", 2*time.Second, ss)
	require.Equal(t, 50.0, st.P50)
	require.Equal(t, 90.0, st.P90)
	require.Equal(t, 99.0, st.P99)
	require.Equal(t, 97.0, st.Success)
	require.Equal(t, 50.0, st.RPS)
	require.Equal(t, "Unavailable 2%, DeadlineExceeded 1%", errorsString(st.Errors, st.Calls))
	require.Equal(t, []string{"0.4ms", "12ms", "301ms", "1.50s"}, []string{fmtMS(0.4), fmtMS(12.3), fmtMS(301), fmtMS(1500)})
	one := callerStats("x", "", time.Second, []sample{{latency: 7 * time.Millisecond}})
	require.Equal(t, 7.0, one.P99)
}
