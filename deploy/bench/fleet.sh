#!/bin/sh
# Runs the fleet simulator against a Bulwark control plane that it starts as
# a child process, with its embedded etcd in a temporary directory, so the
# control plane's CPU and memory are its own. Extra arguments go to
# bulwark-fleet, e.g.:
#
#   deploy/bench/fleet.sh --streams 5000 --sources 10 --seed-services 100
#   deploy/bench/fleet.sh --scenario storm --streams 10000
#   deploy/bench/fleet.sh --streams 1000 --sources 10 --seed-services 100 --writes 5 --change cluster --protocol delta
#   deploy/bench/fleet.sh --streams 1000 --sources 10 --seed-services 100 --abuse-types 50000 --abuse-clusters 2000
#   deploy/bench/fleet.sh --streams 10000 --sources 10 --seed-services 100 --streams-per-conn 1
#
# Envoy proxies run the Envoy ADS model (test/envoymodel) and converge only
# once nothing is warming; --warming=false makes them ACK whatever arrives.
# Progress goes to stderr, one line per phase; the JSON summary to stdout.
#
# Ports: BENCH_XDS (28000), BENCH_ADMIN (28080), BENCH_ETCD (22379) and
# BENCH_ETCD_PEER (22380); BENCH_BIN is where the binaries are built (bin);
# BENCH_SERVER_ARGS adds flags to the control plane (e.g. "--max-delay 1s").
#
# Every simulated connection is a file descriptor in both processes:
# --streams-per-conn 1 (one connection per proxy, as real Envoys have) at
# 10,000 streams needs more than 10,000, so the soft limit is raised to the
# hard one here.
set -eu
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cd "$(dirname "$0")/../.."
GO=${GO:-go}
BIN=${BENCH_BIN:-bin}
XDS=127.0.0.1:${BENCH_XDS:-28000}
ADMIN=127.0.0.1:${BENCH_ADMIN:-28080}
ETCD=127.0.0.1:${BENCH_ETCD:-22379}
PEER=127.0.0.1:${BENCH_ETCD_PEER:-22380}

mkdir -p "$BIN"
"$GO" build -o "$BIN/bulwark" ./cmd/bulwark
"$GO" build -o "$BIN/bulwark-fleet" ./cmd/bulwark-fleet
DATA=$(mktemp -d "${TMPDIR:-/tmp}/bulwark-fleet.XXXXXX")
trap 'rm -rf "$DATA"' EXIT INT TERM

"$BIN/bulwark-fleet" \
	--server-cmd "$BIN/bulwark --data-dir $DATA/etcd --xds-addr $XDS --admin-addr $ADMIN --embedded-etcd-listen $ETCD --embedded-etcd-peer $PEER --enable-pprof --log-level warn ${BENCH_SERVER_ARGS:-}" \
	--server-log "$DATA/bulwark.log" \
	--xds-addr "$XDS" --admin "http://$ADMIN" --etcd "$ETCD" \
	"$@"
