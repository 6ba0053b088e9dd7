#!/usr/bin/env bash
# Runs a local ratemesh cluster on 127.0.0.1 for trying things out.
#
#   ./scripts/cluster.sh up [N]     build, start N nodes (default 3), wait until joined
#   ./scripts/cluster.sh down       SIGTERM every node (graceful leave), SIGKILL after a deadline
#   ./scripts/cluster.sh status     members as each node sees them
#   ./scripts/cluster.sh logs [K]   the log of node K (default: the last lines of each)
#   ./scripts/cluster.sh kill K     SIGKILL node K (a crash drill)
#   ./scripts/cluster.sh start K    restart node K; it rejoins
#
# Ports: node K uses HTTP_BASE+K-1, GOSSIP_BASE+K-1 and RPC_BASE+K-1
# (defaults 8081, 7946, 9091). State (PIDs, address files, logs, the cluster
# secret and admin token) lives in run/cluster/ (git-ignored). Needs bash, Go
# and curl.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

run_dir="$root/run/cluster"
HTTP_BASE="${HTTP_BASE:-8081}"
GOSSIP_BASE="${GOSSIP_BASE:-7946}"
RPC_BASE="${RPC_BASE:-9091}"
WAIT_SECONDS="${WAIT_SECONDS:-20}"
positive HTTP_BASE GOSSIP_BASE RPC_BASE WAIT_SECONDS
# The ports of lib.sh's start_cluster_node.
node_http_base="$HTTP_BASE" node_gossip_base="$GOSSIP_BASE" node_rpc_base="$RPC_BASE"

http_port() { echo $((HTTP_BASE + $1 - 1)); }
gossip_port() { echo $((GOSSIP_BASE + $1 - 1)); }
rpc_port() { echo $((RPC_BASE + $1 - 1)); }
addr_file() { echo "$run_dir/node$1.json"; }

node_pid() {
	local f="$run_dir/node$1.pid"
	[[ -f "$f" ]] && cat "$f"
}

running() {
	local pid
	pid="$(node_pid "$1")" || return 1
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

size() {
	[[ -f "$run_dir/size" ]] || die "no cluster is up (run: $0 up)"
	cat "$run_dir/size"
}

# use_secret exports the cluster's secret and admin token, made at its
# first start, for lib.sh's start_cluster_node and the CLI.
use_secret() {
	# One secret per cluster: authenticates RPC, encrypts gossip, and signs
	# the demo's JWTs the same way on every node.
	[[ -f "$run_dir/secret" ]] || random_secret >"$run_dir/secret"
	RATEMESH_SECRET="$(cat "$run_dir/secret")"
	# The admin token turns on reset, and lets top show keys as they are
	# (to a caller without a token they are hashed); demo.sh reads it too.
	[[ -f "$run_dir/admin-token" ]] || random_secret >"$run_dir/admin-token"
	RATEMESH_ADMIN_TOKEN="$(cat "$run_dir/admin-token")"
	export RATEMESH_SECRET RATEMESH_ADMIN_TOKEN
}

# wait_running waits until every running node reports every running node
# alive.
wait_running() {
	local k urls=()
	for ((k = 1; k <= $(size); k++)); do
		running "$k" && urls+=("$(addr_field "$(addr_file "$k")" http)")
	done
	wait_members "$WAIT_SECONDS" "${#urls[@]}" "${urls[@]}"
}

table() {
	local n k pid
	n="$(size)"
	printf '%-7s %-24s %-7s %-6s %-8s %s\n' NODE HTTP GOSSIP RPC PID LOG
	for ((k = 1; k <= n; k++)); do
		pid="-"
		running "$k" && pid="$(node_pid "$k")"
		printf '%-7s %-24s %-7s %-6s %-8s %s\n' "node$k" "http://127.0.0.1:$(http_port "$k")" \
			"$(gossip_port "$k")" "$(rpc_port "$k")" "$pid" "run/cluster/node$k.log"
	done
}

cmd_up() {
	local n="${1:-3}" k
	positive n
	if [[ -f "$run_dir/size" ]]; then
		for ((k = 1; k <= $(size); k++)); do
			running "$k" && die "a cluster is already up (node $k runs); run: $0 down"
		done
	fi
	need go curl
	mkdir -p "$run_dir"
	rm -f "$run_dir"/*.pid "$run_dir"/*.log "$run_dir"/*.json
	echo "building $bin"
	build_node "$bin"
	echo "$n" >"$run_dir/size"
	use_secret
	start_cluster "$n" "$n" "$run_dir"
	echo "ratemesh cluster of $n nodes is up:"
	table
}

cmd_down() {
	local n k pids=()
	n="$(size)"
	for ((k = 1; k <= n; k++)); do
		running "$k" && pids+=("$(node_pid "$k")")
	done
	stop_pids 10 "${pids[@]}"
	rm -f "$run_dir"/*.pid "$run_dir/size"
	echo "cluster down (logs kept in run/cluster/)"
}

cmd_status() {
	local n k
	need_bin
	n="$(size)"
	use_secret # top shows the keys to the admin token
	table
	for ((k = 1; k <= n; k++)); do
		echo
		echo "node$k sees:"
		if running "$k"; then
			cli "127.0.0.1:$(http_port "$k")" members --timeout 2s | sed 's/^/  /' || echo "  (no answer)"
		else
			echo "  (not running)"
		fi
	done
	for ((k = 1; k <= n; k++)); do
		running "$k" || continue
		echo
		cli "127.0.0.1:$(http_port "$k")" top --timeout 2s | sed 's/^/  /' || echo "  (no answer)"
		echo "  (dashboard: http://127.0.0.1:$(http_port "$k")/ui)"
		break
	done
}

cmd_logs() {
	if [[ $# -gt 0 ]]; then
		need_k "$1"
		cat "$run_dir/node$1.log"
	else
		tail -n 20 "$run_dir"/node*.log
	fi
}

need_k() {
	[[ "${1:-}" =~ ^[1-9][0-9]*$ ]] || die "give a node number"
	[[ "$1" -le "$(size)" ]] || die "no node $1 (cluster has $(size))"
}

cmd_kill() {
	need_k "${1:-}"
	running "$1" || die "node $1 is not running"
	kill -KILL "$(node_pid "$1")"
	local deadline=$((SECONDS + 5))
	while running "$1" && ((SECONDS < deadline)); do sleep 0.05; done
	echo "node $1 killed (SIGKILL); the others route around it"
}

cmd_start() {
	need_k "${1:-}"
	running "$1" && die "node $1 is already running"
	local k join=""
	for ((k = 1; k <= $(size); k++)); do
		if running "$k"; then
			join="$(addr_field "$(addr_file "$k")" gossip)"
			break
		fi
	done
	use_secret
	start_cluster_node "$1" "$run_dir" "$join"
	wait_running
	echo "node $1 restarted and rejoined"
	table
}

case "${1:-}" in
up)
	shift
	cmd_up "$@"
	;;
down) cmd_down ;;
status) cmd_status ;;
logs)
	shift
	cmd_logs "$@"
	;;
kill)
	shift
	cmd_kill "$@"
	;;
start)
	shift
	cmd_start "$@"
	;;
*)
	sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac
