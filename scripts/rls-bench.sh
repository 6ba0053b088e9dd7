#!/usr/bin/env bash
# rls-bench.sh: the Envoy rate limit service of envoyproxy/ratelimit (the
# reference, with Redis) and of a 3-node ratemesh cluster, side by side:
# one gRPC load generator (cmd/rls-load), one config, 10,000 user
# descriptors and 1 hot descriptor, and one table of req/s, p50, p99 and
# how many hits each limit admitted against what an exact service admits.
#
#   RATELIMIT_SRC=path/to/envoyproxy-ratelimit scripts/rls-bench.sh
#
# The reference is built from its source (go build ./src/service_cmd; its
# modules come from the module proxy) unless RATELIMIT_BIN names a built
# one. Redis is redis-server from the distribution (apt-get install
# redis-server). Settings (environment):
#
#   DURATION=10      seconds of load for each service
#   CONCURRENCY=64   calls in flight
#   KEYS=10000       user descriptors (limit COLD_LIMIT an hour each)
#   COLD_LIMIT=5     HOT_LIMIT=1000 (the hot descriptor, an hour)
#   HOT_EVERY=2      every N-th call is the hot descriptor
#   ROUNDS=3         runs of each service, alternating, each on fresh
#                    counters (a busy machine varies from run to run)
#   BASE_PORT=18000  Redis on +1, the reference's gRPC, HTTP and debug
#                    ports on +2, +3, +4; the nodes take free ports
#   FORWARD_TIMEOUT=1s  the nodes' --forward-timeout (see below)
#
# The load generator, the reference, Redis and the nodes share this
# machine's CPUs, and the load keeps them busy: a healthy owner can take
# longer than the node's default 50 ms to answer a forwarded check, and a
# check that times out is decided by the fail policy on the node asked,
# which counts it apart from the owner (docs/design.md). The nodes here
# wait up to FORWARD_TIMEOUT instead, and the script prints how many
# checks the fail policy decided, so that an exact count is not luck.
#
# Both limits are per hour; the reference aligns its windows to the clock,
# so a run is never started within a run's length of the hour's end.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION="${DURATION:-10}"
CONCURRENCY="${CONCURRENCY:-64}"
KEYS="${KEYS:-10000}"
COLD_LIMIT="${COLD_LIMIT:-5}"
HOT_LIMIT="${HOT_LIMIT:-1000}"
HOT_EVERY="${HOT_EVERY:-2}"
ROUNDS="${ROUNDS:-3}"
BASE_PORT="${BASE_PORT:-18000}"
FORWARD_TIMEOUT="${FORWARD_TIMEOUT:-1s}"
positive DURATION CONCURRENCY KEYS COLD_LIMIT HOT_LIMIT HOT_EVERY ROUNDS BASE_PORT
need go curl redis-server redis-cli
[[ -n "${RATELIMIT_BIN:-}" || -n "${RATELIMIT_SRC:-}" ]] ||
	die "set RATELIMIT_SRC to a checkout of envoyproxy/ratelimit (or RATELIMIT_BIN to its built service)"

work="$(mktemp -d)"
pids=() # Redis and the reference; the nodes leave pid files in $work
cleanup() {
	local f
	for f in "$work"/node*.pid; do
		[[ ! -f "$f" ]] || pids+=("$(cat "$f")")
	done
	((${#pids[@]} == 0)) || stop_pids 10 "${pids[@]}"
	rm -rf "$work"
}
trap cleanup EXIT

redis_port=$((BASE_PORT + 1)) ref_grpc=$((BASE_PORT + 2)) ref_http=$((BASE_PORT + 3)) ref_debug=$((BASE_PORT + 4))
for p in "$redis_port" "$ref_grpc" "$ref_http" "$ref_debug"; do
	! port_taken "$p" || die "port $p is taken; set BASE_PORT"
done

echo "building ratemesh-node, rls-load and the reference ..." >&2
# lib.sh's helpers read the nodes' JSON with this binary.
bin="$work/ratemesh-node"
build_node "$bin"
(cd "$root" && go build -o "$work/rls-load" ./cmd/rls-load) || die "go build ./cmd/rls-load failed"
ref="${RATELIMIT_BIN:-}"
if [[ -z "$ref" ]]; then
	ref="$work/ratelimit"
	(cd "$RATELIMIT_SRC" && go build -o "$ref" ./src/service_cmd) || die "go build ./src/service_cmd in $RATELIMIT_SRC failed"
fi

# One config for both: the reference reads RUNTIME_ROOT/SUBDIRECTORY/config.
cfg="$work/runtime/ratelimit/config"
mkdir -p "$cfg"
cat >"$cfg/bench.yaml" <<EOF
domain: bench
descriptors:
  - key: user
    rate_limit: {unit: hour, requests_per_unit: $COLD_LIMIT}
  - key: hot
    rate_limit: {unit: hour, requests_per_unit: $HOT_LIMIT}
EOF

wait_port() {
	local port="$1" pid="$2" log="$3" deadline=$((SECONDS + 30))
	until port_taken "$port"; do
		kill -0 "$pid" 2>/dev/null || {
			tail -n 20 "$log" >&2
			die "pid $pid exited; see $log"
		}
		((SECONDS < deadline)) || die "nothing listens on $port after 30 s; see $log"
		sleep 0.05
	done
}

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
wait_port "$redis_port" "${pids[-1]}" "$work/redis.log"

USE_STATSD=false LOG_LEVEL=warn BACKEND_TYPE=redis REDIS_SOCKET_TYPE=tcp REDIS_URL="127.0.0.1:$redis_port" \
	RUNTIME_ROOT="$work/runtime" RUNTIME_SUBDIRECTORY=ratelimit RUNTIME_WATCH_ROOT=false \
	HOST=127.0.0.1 PORT="$ref_http" GRPC_HOST=127.0.0.1 GRPC_PORT="$ref_grpc" DEBUG_HOST=127.0.0.1 DEBUG_PORT="$ref_debug" \
	"$ref" >"$work/reference.log" 2>&1 &
pids+=($!)
wait_port "$ref_grpc" "${pids[-1]}" "$work/reference.log"

RATEMESH_SECRET="$(random_secret)"
export RATEMESH_SECRET
start_cluster 3 3 "$work" --grpc-port 0 --rls-config "$cfg" --demo=false --log-level warn --forward-timeout "$FORWARD_TIMEOUT"
grpc_addrs=("${cluster_grpc[@]}") http_addrs=("${cluster_http[@]}")

# A run must not straddle the hour: the reference's windows restart there.
clear_of_the_hour() {
	local left=$((3600 - $(date +%s) % 3600)) need=$((DURATION + 15))
	if ((left < need)); then
		echo "waiting $((left + 2)) s for the next hour, so that no window restarts mid-run ..." >&2
		sleep $((left + 2))
	fi
}

load() {
	clear_of_the_hour
	"$work/rls-load" -name "$1" -targets "$2" -prefix "$(random_secret | cut -c1-8)-" -duration "${DURATION}s" \
		-concurrency "$CONCURRENCY" -keys "$KEYS" -hot-every "$HOT_EVERY" -cold-limit "$COLD_LIMIT" -hot-limit "$HOT_LIMIT" "${@:3}"
}

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), ${DURATION} s each, $CONCURRENCY calls in flight, $KEYS users + 1 hot descriptor"
targets="$(
	IFS=,
	echo "${grpc_addrs[*]}"
)"
header=(-header)
for ((round = 1; round <= ROUNDS; round++)); do
	load "envoyproxy/ratelimit + Redis" "127.0.0.1:$ref_grpc" "${header[@]}"
	header=()
	load "ratemesh, 3 nodes" "$targets"
done
fallbacks=0
for a in "${http_addrs[@]}"; do
	n="$(curl -fsS --max-time 5 "http://$a/metrics" | awk '/^ratemesh_fallback_decisions_total/ {s += $2} END {print s + 0}')"
	fallbacks=$((fallbacks + n))
done
echo "# ratemesh: $fallbacks checks decided by the fail policy (--forward-timeout $FORWARD_TIMEOUT)"
