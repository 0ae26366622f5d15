#!/bin/sh
# make bench: the Go benchmarks of resolve, translate, serialization and the
# snapshot build, then a short fleet run (1,000 streams), all appended to
# docs/benchmarks.md (or BENCH_OUT) with the machine, the date and the
# commands. A few minutes on 2 cores.
set -eu
cd "$(dirname "$0")/../.."
GO=${GO:-go}
OUT=${BENCH_OUT:-docs/benchmarks.md}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bulwark-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM

# Progress: a line per phase on stderr ("== 1/3 ..."), the benchmark
# results as each finishes, and the fleet simulator's own phase lines with
# their counts (streams warm, converged) every few seconds.
BENCH_CMD="$GO test -run '^\$' -bench . -benchmem -benchtime=3x ./xds/ ./controlplane/"
echo "== 1/3 Go benchmarks of ./xds/ and ./controlplane/ (compiling first): $BENCH_CMD" >&2
"$GO" test -run '^$' -bench . -benchmem -benchtime=3x ./xds/ ./controlplane/ | tee "$TMP/bench.txt"
echo "== 2/3 $(grep -c '^Benchmark' "$TMP/bench.txt") benchmark results; appending them to $OUT" >&2

cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //' || true)
mem=$(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo 2>/dev/null || true)
{
	printf '\n### make bench, %s\n\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	printf 'Machine: %s CPUs (%s), %s, %s, %s; commit %s.\n\n' \
		"$(getconf _NPROCESSORS_ONLN)" "$cpu" "$mem" "$("$GO" version | cut -d' ' -f3-)" \
		"$(uname -sr)" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
	printf '```sh\n%s\n```\n\n```text\n' "$BENCH_CMD"
	grep -E '^(Benchmark|pkg:)' "$TMP/bench.txt"
	printf '```\n'
} >> "$OUT"

echo "== 3/3 short fleet run: 1,000 streams over 10 sources, 100 services, 3 writes (building the binaries first)" >&2
sh deploy/bench/fleet.sh --streams 1000 --sources 10 --seed-services 100 --writes 3 \
	--append-md "$OUT" --out "$TMP/fleet.json" > /dev/null
echo "== done: appended to $OUT" >&2
