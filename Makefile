# Bulwark — resilience control plane for service meshes.
GO        ?= go
DATA_DIR  ?= .bulwark/data
# Packages that start goroutines run under the race detector.
RACE_PKGS := ./store/... ./controlplane/... ./cmd/...

.PHONY: all build run install demo deps test test-race test-unit bench fleet fmt vet clean

all: build

build:
	$(GO) build -o bin/ ./cmd/...

## run: a control plane with its embedded etcd, serving the example mesh.
## The built binary replaces make's shell (exec), so stopping make by its
## PID (SIGTERM, Ctrl-C) stops the server and frees its ports; `go run`
## would leave its child running.
## RUN_ARGS adds flags, e.g. make run RUN_ARGS="--admin-addr 127.0.0.1:18081".
RUN_ARGS ?=
run: build
	@echo "make run: serving examples/policies, kept in sync: edit the files there (the API refuses changes to them without ?force=true)."
	@echo "make run: this also starts the 10-minute chaos experiment of examples/policies/chaos-payments-503.yaml (10% of the calls to payments that carry the header x-chaos: on fail with 503); stop it at once with: bulwarkctl chaos stop"
	exec bin/bulwark --data-dir $(DATA_DIR) --sync-dir examples/policies $(RUN_ARGS)

## install: bulwark, bulwarkctl and bulwark-fleet into $(GOBIN) (default
## $(go env GOPATH)/bin), so that a bare `bulwarkctl` works when that is on PATH
install:
	$(GO) install ./cmd/...
	@echo "installed in $$($(GO) env GOBIN | grep . || echo $$($(GO) env GOPATH)/bin)"

## demo: something to watch: a control plane with its own ports and data
## (.bulwark/demo), upstreams to make slow, failing or dead, and proxyless
## gRPC callers with a live readout (docs/demo.md, the README's walkthrough).
## Ctrl-C stops it. DEMO_ARGS passes flags, e.g. DEMO_ARGS="--rate 100".
DEMO_ARGS ?=
demo:
	$(GO) build -o bin/ ./cmd/bulwark-demo ./cmd/bulwarkctl
	exec bin/bulwark-demo $(DEMO_ARGS)

## deps: what the tests need beyond Go: Debian's etcd-server (etcd 3.4, for
## the test of its leaderless errors), gRPC C-core for the end-to-end tests
## with a second xDS client (Debian's python3-grpcio, used by /usr/bin/python3),
## Debian's prometheus (the server and promtool: the game-day tests and the
## alert rules' unit tests), and grpc-js with grpc-js-xds for a third (test/grpcjs, pinned by its
## package-lock.json, installed there with npm ci when node_modules is
## missing or does not match; Node.js and npm come from apt if absent),
## Debian's chromium for the web console's browser tests (docs/console.md),
## and jq and zsh for the bulwarkctl tests of the documented lint recipe and
## of the zsh completion script.
## Needs root; CI runs it before `make test`. A machine that has them skips
## apt and npm.
deps:
	@command -v jq >/dev/null && command -v zsh >/dev/null || { apt-get update && apt-get install -y --no-install-recommends jq zsh; }
	@if /usr/bin/python3 -c 'import grpc' 2>/dev/null; then \
		echo "python3-grpcio: $$(/usr/bin/python3 -c 'import grpc; print(grpc.__version__)')"; \
	else \
		apt-get update && apt-get install -y --no-install-recommends python3-grpcio; \
	fi
	@if command -v promtool >/dev/null && command -v prometheus >/dev/null; then \
		echo "prometheus: $$(prometheus --version 2>&1 | head -1)"; \
	else \
		apt-get update && apt-get install -y --no-install-recommends prometheus; \
	fi
	@command -v npm >/dev/null || { apt-get update && apt-get install -y --no-install-recommends nodejs npm; }
	@# etcd 3.4 as separate processes, for the multi-replica test of its errors (cmd/bulwarkctl).
	@if /usr/bin/etcd --version 2>/dev/null | grep -q 'etcd Version: 3.4'; then \
		echo "etcd-server: $$(/usr/bin/etcd --version | head -1)"; \
	else \
		apt-get update && apt-get install -y --no-install-recommends etcd-server; \
	fi
	@if [ -d test/grpcjs/node_modules ] && (cd test/grpcjs && npm ls --depth=0 >/dev/null 2>&1); then \
		echo "grpc-js: $$(cd test/grpcjs && npm ls --depth=0 2>/dev/null | grep -o '@grpc/[a-z-]*@[0-9.]*' | tr '\n' ' ')"; \
	else \
		cd test/grpcjs && npm ci --no-audit --no-fund; \
	fi
	@command -v chromium >/dev/null || { apt-get update && apt-get install -y --no-install-recommends chromium fonts-dejavu-core; }

## test: vet, then every test; the race detector on the packages that start goroutines
test: deps vet
	$(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v -E '/(store|controlplane|cmd)(/|$$)')
	$(GO) test -count=1 -race -timeout 30m $(RACE_PKGS)

## bench: Go benchmarks and a short fleet run (1,000 streams); appends to docs/benchmarks.md
bench:
	GO=$(GO) sh deploy/bench/bench.sh

## fleet: the fleet simulator against a control plane it starts, e.g.
##   make fleet FLEET_ARGS="--scenario storm --streams 10000"  (see docs/benchmarks.md)
FLEET_ARGS ?= --streams 1000 --sources 10 --seed-services 100
fleet:
	GO=$(GO) sh deploy/bench/fleet.sh $(FLEET_ARGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

# Static checks beyond go vet, pinned; `go run` fetches them from the module
# proxy on first use and caches them.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
DEADCODE    := golang.org/x/tools/cmd/deadcode@v0.52.0

## vet: go vet, staticcheck, and deadcode (no function unreachable from a
## command or a test)
vet:
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@out=$$($(GO) run $(DEADCODE) -test ./...) || exit 1; \
	if [ -n "$$out" ]; then echo "$$out"; echo "deadcode: the functions above are unreachable; delete them"; exit 1; fi

clean:
	rm -rf bin .bulwark
