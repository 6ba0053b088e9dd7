#!/usr/bin/env bash
# Runs three ratemesh nodes on 127.0.0.1 as Envoy's rate limit service
# (demo off, API token on) and calls them exactly as envoy.yaml's Envoy
# would: the same descriptors for the same requests, the same domain, the
# token in the same gRPC metadata. Needs only Go and curl.
#
#   ./examples/envoy/run.sh
#
# What it prints, and checks:
#   bob (plan silver):  calls 1-5 OK, call 6 OVER_LIMIT  (5 a minute)
#   alice (plan gold):  calls 1-10 OK, call 11 OVER_LIMIT (10 a minute)
#   a wrong token:      refused; the node's /readyz then carries a warning
#
# RATEMESH_SECRET and RATEMESH_API_TOKEN are used if set, else generated;
# they go to the nodes and the client through the environment only.
# Ports: HTTP_BASE (8181), GOSSIP_BASE (7956), RPC_BASE (9191) and
# GRPC_BASE (8089), node K on BASE+K-1.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
HTTP_BASE="${HTTP_BASE:-8181}"
GOSSIP_BASE="${GOSSIP_BASE:-7956}"
RPC_BASE="${RPC_BASE:-9191}"
GRPC_BASE="${GRPC_BASE:-8089}"
WAIT_SECONDS="${WAIT_SECONDS:-30}"

die() {
	echo "run.sh: $*" >&2
	exit 1
}

command -v go >/dev/null || die "go is needed: https://go.dev/dl/"
command -v curl >/dev/null || die "curl is needed (apt-get install curl)"

# random_hex prints 32 random bytes as hex.
random_hex() { od -An -tx1 -N32 /dev/urandom | tr -d ' \n'; }

export RATEMESH_SECRET="${RATEMESH_SECRET:-$(random_hex)}"
export RATEMESH_API_TOKEN="${RATEMESH_API_TOKEN:-$(random_hex)}"

work="$(mktemp -d)"
pids=()
cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

echo "== building ratemesh-node and envoy-client"
(cd "$root" && go build -o "$work/ratemesh-node" ./cmd/node && go build -o "$work/envoy-client" ./cmd/envoy-client)

# start_node K starts node K; nodes 2 and 3 join node 1.
start_node() {
	local k="$1"
	local args=(--name "rl-$k" --bind 127.0.0.1 --gossip-profile local --demo=false
		--http-port $((HTTP_BASE + k - 1)) --gossip-port $((GOSSIP_BASE + k - 1))
		--rpc-port $((RPC_BASE + k - 1)) --grpc-port $((GRPC_BASE + k - 1))
		--rls-config "$here/ratelimit")
	((k > 1)) && args+=(--join "127.0.0.1:$GOSSIP_BASE")
	"$work/ratemesh-node" "${args[@]}" >"$work/rl-$k.log" 2>&1 &
	pids+=("$!")
}

# await_ready K waits until node K's /readyz answers 200.
await_ready() {
	local k="$1" deadline=$((SECONDS + WAIT_SECONDS))
	until curl -fsS "http://127.0.0.1:$((HTTP_BASE + k - 1))/readyz" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			cat "$work/rl-$k.log" >&2
			die "node rl-$k not ready after ${WAIT_SECONDS}s (its log is above)"
		fi
		sleep 0.2
	done
}

echo "== starting rl-1, rl-2, rl-3 (demo off, API token required)"
for k in 1 2 3; do
	start_node "$k"
	await_ready "$k"
done

targets="127.0.0.1:$GRPC_BASE,127.0.0.1:$((GRPC_BASE + 1)),127.0.0.1:$((GRPC_BASE + 2))"
client() { "$work/envoy-client" -envoy "$here/envoy.yaml" -targets "$targets" "$@"; }

echo "== bob, plan silver: 5 a minute"
client -remote 10.0.0.1 -H x-user-id=bob -H x-plan=silver -H :path=/products -n 6 -want-ok 5
echo "== alice, plan gold: 10 a minute"
client -remote 10.0.0.2 -H x-user-id=alice -H x-plan=gold -H :path=/search?q=envoy -n 11 -want-ok 10

echo "== a wrong token: the node refuses the call and says so on /readyz"
if RATEMESH_API_TOKEN=wrong-token-0123456789abcdef client -remote 10.0.0.3 -H x-user-id=carol -H x-plan=silver -n 1; then
	die "a call with a wrong token was answered"
fi
readyz="$(curl -fsS "http://127.0.0.1:$HTTP_BASE/readyz")"
echo "$readyz"
[[ "$readyz" == *'"warnings"'* ]] || die "/readyz has no warning after refused calls"
echo "== done: limits held across 3 nodes with the token; the wrong token was refused and reported"
