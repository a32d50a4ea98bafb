# dagq developer targets. CI runs `bash .ci/run`, which calls these.
GO ?= go
PKGS := ./...

.PHONY: ui-measure screenshots build test emulators-up emulators-down generate check-generate lint check-deps run run-embedded run-failing install bench bench-mem bench-micro soak fuzz tidy

build:
	$(GO) build $(PKGS)

## test: every package, race detector on, no cache; the SQS and S3 adapters run
## the conformance suite against the local emulators, which it starts first.
## The emulator env (DAGQ_TEST_*, AWS_*) reaches every package; tests that need
## an emulator fail loudly without it (they never skip).
test: emulators-up
	eval "$$(scripts/emulators.sh env)" && $(GO) test -race -count=1 $(PKGS)

## emulators-up: install (pinned, once per user into ~/.cache/dagq/emulators) and start fauxqs (SQS) and
## versitygw (S3) on 127.0.0.1; idempotent. `scripts/emulators.sh env` prints the exports.
emulators-up:
	scripts/emulators.sh up

## emulators-down: stop the emulators emulators-up started (and only those).
emulators-down:
	scripts/emulators.sh down

## The generators and the linter are pinned by tool directives in tools/go.mod, a module of its
## own, so a service that requires dagq does not inherit them (or golang.org/x/tools) in its
## version resolution. Run one by hand with `go tool -modfile=tools/go.mod NAME`.
TOOLS := $(GO) tool -modfile=tools/go.mod

## generate: regenerate mocks and Wire injectors (the //go:generate directives run mockgen and wire
## from tools/go.mod). The directive Wire writes into every wire_gen.go ("go run -mod=mod
## github.com/google/wire/cmd/wire") is skipped: it would resolve Wire through go.mod and add
## Wire's dependencies there.
generate:
	$(GO) generate -skip '^//go:generate go run -mod=mod github.com/google/wire/cmd/wire' $(PKGS)

## check-generate: fail when generated files are not current.
check-generate: generate
	@if [ -n "$$(git status --porcelain -- . )" ]; then \
		echo "generated files are out of date; run 'make generate' and commit:"; \
		git status --porcelain -- .; git --no-pager diff --stat; exit 1; \
	fi

## lint: gofmt, go vet + staticcheck (pinned by the tool directive in tools/go.mod).
lint: check-deps
	@unformatted="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$unformatted" ]; then \
		echo "lint: not gofmt-formatted (run gofmt -w on them):"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(TOOLS) staticcheck $(PKGS)

## check-deps: the hexagon holds — core and ports import no AWS, viper or adapter — and the
## composition root (app, app/config) holds neither the CLI (app/cli, app/telemetry) nor its
## dependencies: no cobra, Prometheus, gRPC or OpenTelemetry exporter, and pflag only where viper
## needs it (viper binds flags; app/config defines the flags). On failure it names each import
## that crosses the line.
ROOT_PKGS := ./app ./app/config
ROOT_FORBIDDEN := (github\.com/dagq/dagq/app/(cli|telemetry|ui)|github\.com/spf13/cobra|github\.com/prometheus/|google\.golang\.org/grpc|github\.com/grpc-ecosystem/|go\.opentelemetry\.io/otel/exporters/|go\.opentelemetry\.io/proto/otlp)
PFLAG_IMPORTERS := (github\.com/spf13/viper|github\.com/dagq/dagq/app/config)
IMPORT_EDGES := -f '{{$$p := .ImportPath}}{{range .Imports}}{{$$p}} imports {{.}}{{"\n"}}{{end}}'
check-deps:
	@bad=$$($(GO) list -deps ./core/... ./ports/... ./internal/... | grep -E 'aws-sdk-go|spf13/viper|dagq/dagq/adapters|dagq/dagq/app' || true); \
	if [ -n "$$bad" ]; then echo "core/ports must not depend on:"; echo "$$bad"; exit 1; fi; \
	echo "check-deps: core, core/dag, internal and ports depend on no AWS, viper, adapter or app package"
	@fail=0; for p in $(ROOT_PKGS); do \
		edges=$$($(GO) list -deps $(IMPORT_EDGES) $$p) || exit 1; \
		bad=$$(echo "$$edges" | grep -E ' imports $(ROOT_FORBIDDEN)' | grep -vE '^$(ROOT_FORBIDDEN)' | sort -u); \
		if [ -n "$$bad" ]; then \
			echo "check-deps: the composition root package $$p must not depend on the CLI (app/cli, app/telemetry), cobra, Prometheus, gRPC or OpenTelemetry exporters; its dependencies:"; \
			echo "$$bad" | sed 's/^/  /'; fail=1; \
		fi; \
		bad=$$(echo "$$edges" | grep -E ' imports github\.com/spf13/pflag$$' | grep -vE '^$(PFLAG_IMPORTERS) ' | sort -u); \
		if [ -n "$$bad" ]; then \
			echo "check-deps: the composition root package $$p must not use pflag (command-line flags belong to the CLI, app/cli); its dependencies:"; \
			echo "$$bad" | sed 's/^/  /'; fail=1; \
		fi; \
	done; \
	if [ $$fail -ne 0 ]; then exit 1; fi; \
	echo "check-deps: the composition root (app, app/config) depends on no CLI package, cobra, Prometheus, gRPC or OpenTelemetry exporter"
	@bad=$$($(GO) list -deps ./examples/service ./adapters/awsports | grep -E 'spf13/cobra|spf13/viper|prometheus|google.golang.org/grpc' || true); \
	if [ -n "$$bad" ]; then echo "examples/service and adapters/awsports (what embedders link) must not depend on:"; echo "$$bad"; exit 1; fi; \
	echo "check-deps: examples/service and adapters/awsports link no cobra, viper, prometheus or grpc"

## run: the dagq CLI runs the diamond job on the embedded default (memory transport, no AWS).
run:
	$(GO) run ./app/cmd/dagq run examples/jobs/diamond.yaml

## run-embedded: the embedding example (worker + client + cancel in one program).
run-embedded:
	$(GO) run ./examples/embedded

## run-failing: a job whose step fails after retries (exits 1, as it should).
run-failing:
	-$(GO) run ./app/cmd/dagq run examples/jobs/failing.yaml

## install: install the dagq command into $$(go env GOPATH)/bin.
install:
	$(GO) install ./app/cmd/dagq

## bench: the dagq benchmark (app/cmd/dagq-bench): memory throughput and DAG overhead, and on the
## emulators SQS throughput at worker concurrency 1, 10 and 32 next to a raw aws-sdk-go-v2 baseline
## (dagq ÷ raw), requests and CPU per task, latency, cancel latency, idle requests and cost. Prints
## a table, then one JSON line (also written to $$BENCH_OUT when set). About 2 minutes; BENCH_QUICK=1: seconds.
bench: emulators-up
	eval "$$(scripts/emulators.sh env)" && $(GO) run ./app/cmd/dagq-bench

## ui-measure: what the dashboard (dagq ui) costs and how closely it follows a run, on the emulators
## with headless Chromium (about 4 minutes; prints, asserts nothing): step finished → shown in the
## browser, p50/p90/max over a 50-step job at launcher.heartbeat_interval 5s and 1s; SQS+S3 requests
## per minute of an open run page, the queues page, the runs page and no page; the runs page with
## 1,000 runs (docs/dashboard.md).
ui-measure: emulators-up
	eval "$$(scripts/emulators.sh env)" && DAGQ_TEST_UI_MEASURE=1 $(GO) test -count=1 -run '^TestMeasure_Dashboard$$' -v -timeout 20m ./app/ui/ | grep -E '^(latency|requests|runs page|--- |ok|FAIL)'

## screenshots: the screenshots of docs/dashboard.md (docs/img/dashboard-*.png), taken by the browser
## tests TestBrowser_Pages and TestBrowser_ReexecuteFromFailure in headless Chromium on the memory transport.
screenshots:
	DAGQ_TEST_UI_SCREENSHOTS=$(CURDIR)/docs/img $(GO) test -count=1 -run '^TestBrowser_(Pages|ReexecuteFromFailure)$$' ./app/ui/

## bench-mem: only the memory scenarios of the benchmark (no emulators; BENCH_FLAGS adds flags,
## e.g. BENCH_FLAGS="-cpuprofile cpu.out").
bench-mem:
	$(GO) run ./app/cmd/dagq-bench -only mem,dag $(BENCH_FLAGS)

## soak: the soak (dagq-bench -soak, not part of make test): SOAK_DURATION (default 30m) of load on
## three worker processes on the emulators — 50,000 tasks and 200 launched runs (proportionally fewer
## for a shorter SOAK_DURATION) — with a rolling SIGTERM restart of one worker every 2 minutes and a
## kill -9 every 5 (SOAK_SIGTERM_EVERY, SOAK_KILL_EVERY override them). Then it checks that every task
## has exactly one stored result, every run finished and no queue holds a message, and prints
## duplicates executed, latency p50/p99/max and the longest stall; exit 1 naming what failed.
## SOAK_FLAGS adds flags (-soak-tasks N, -soak-runs N, -soak-drain D, …; go run ./app/cmd/dagq-bench -h).
SOAK_DURATION ?= 30m
soak: emulators-up
	eval "$$(scripts/emulators.sh env)" && $(GO) run ./app/cmd/dagq-bench -soak $(SOAK_DURATION) $(SOAK_FLAGS)

## bench-micro: Go micro-benchmarks (memory round trip, envelope, registry dispatch, memory adapter);
## BENCH_COUNT=10 repeats each for benchstat (docs/performance.md).
BENCH_COUNT ?= 1
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -count=$(BENCH_COUNT) ./core/... ./internal/... ./adapters/memory/...

## fuzz: run each fuzz target for FUZZTIME (default 30s per target): the envelope
## decoder, the job-file parser and config loading. Their seed corpora (f.Add and
## testdata/fuzz) run as plain tests in `make test`; a failure found here is written
## to the package's testdata/fuzz/<target>/ — fix it and keep the file as a seed.
FUZZTIME ?= 30s
FUZZ_TARGETS := FuzzDecodeEnvelope:./internal/wire/ FuzzParse:./app/jobfile/ FuzzLoad:./app/config/
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz: $${t%%:*} in $${t#*:} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t%%:*}\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 200x "$${t#*:}"; \
	done

tidy:
	$(GO) mod tidy
	cd tools && $(GO) mod tidy
