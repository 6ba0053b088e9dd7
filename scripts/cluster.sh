#!/usr/bin/env bash
# Runs a local ratemesh cluster on 127.0.0.1 for trying things out.
#
#   ./scripts/cluster.sh up [N]     build, start N nodes (default 3), wait until joined
#   ./scripts/cluster.sh down       SIGTERM every node (graceful leave), SIGKILL after a deadline
#   ./scripts/cluster.sh status     members as each node sees them
#   ./scripts/cluster.sh logs [K]   the log of node K (default: all)
#   ./scripts/cluster.sh kill K     SIGKILL node K (a crash drill)
#   ./scripts/cluster.sh start K    restart node K; it rejoins
#
# Ports: node K uses HTTP_BASE+K-1, GOSSIP_BASE+K-1 and RPC_BASE+K-1
# (defaults 8081, 7946, 9091). State (PIDs, logs, the cluster secret) lives in
# run/cluster/ (git-ignored).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
run_dir="$root/run/cluster"
bin="$root/bin/ratemesh-node"
HTTP_BASE="${HTTP_BASE:-8081}"
GOSSIP_BASE="${GOSSIP_BASE:-7946}"
RPC_BASE="${RPC_BASE:-9091}"
WAIT_SECONDS="${WAIT_SECONDS:-20}"

die() { echo "cluster.sh: $*" >&2; exit 1; }

http_port() { echo $((HTTP_BASE + $1 - 1)); }
gossip_port() { echo $((GOSSIP_BASE + $1 - 1)); }
rpc_port() { echo $((RPC_BASE + $1 - 1)); }

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

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

# members K prints how many members node K reports, or nothing.
members() {
	curl -fsS --max-time 1 "http://127.0.0.1:$(http_port "$1")/v1/cluster/members" 2>/dev/null |
		grep -o '"rpc_addr"' | wc -l || true
}

# start_node K [SEED]: start node K, joining the node numbered SEED.
start_node() {
	local k="$1" seed="${2:-}" join=""
	for p in "$(http_port "$k")" "$(gossip_port "$k")" "$(rpc_port "$k")"; do
		port_taken "$p" && die "port $p (node $k) is taken; set HTTP_BASE, GOSSIP_BASE or RPC_BASE"
	done
	[[ -n "$seed" ]] && join="127.0.0.1:$(gossip_port "$seed")"
	RATEMESH_NAME="node$k" \
		RATEMESH_BIND=127.0.0.1 \
		RATEMESH_HTTP_PORT="$(http_port "$k")" \
		RATEMESH_GOSSIP_PORT="$(gossip_port "$k")" \
		RATEMESH_RPC_PORT="$(rpc_port "$k")" \
		RATEMESH_JOIN="$join" \
		RATEMESH_GOSSIP_PROFILE=local \
		RATEMESH_SECRET="$(cat "$run_dir/secret")" \
		nohup "$bin" >>"$run_dir/node$k.log" 2>&1 &
	echo $! >"$run_dir/node$k.pid"
}

wait_members() {
	local want="$1" n deadline=$((SECONDS + WAIT_SECONDS))
	n="$(size)"
	for ((k = 1; k <= n; k++)); do
		running "$k" || continue
		until [[ "$(members "$k")" -eq "$want" ]]; do
			((SECONDS < deadline)) || die "node $k does not report $want members after ${WAIT_SECONDS}s; see $run_dir/node$k.log"
			sleep 0.1
		done
	done
}

table() {
	local n
	n="$(size)"
	printf '%-7s %-24s %-7s %-6s %-8s %s\n' NODE HTTP GOSSIP RPC PID LOG
	for ((k = 1; k <= n; k++)); do
		local pid="-"
		running "$k" && pid="$(node_pid "$k")"
		printf '%-7s %-24s %-7s %-6s %-8s %s\n' "node$k" "http://127.0.0.1:$(http_port "$k")" \
			"$(gossip_port "$k")" "$(rpc_port "$k")" "$pid" "run/cluster/node$k.log"
	done
}

cmd_up() {
	local n="${1:-3}"
	[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "up: N must be a positive number, not '$n'"
	if [[ -f "$run_dir/size" ]]; then
		for ((k = 1; k <= $(size); k++)); do
			running "$k" && die "a cluster is already up (node $k runs); run: $0 down"
		done
	fi
	command -v curl >/dev/null || die "curl is needed"
	mkdir -p "$run_dir" "$root/bin"
	rm -f "$run_dir"/*.pid "$run_dir"/*.log
	echo "building $bin"
	(cd "$root" && go build -o "$bin" ./cmd/node)
	echo "$n" >"$run_dir/size"
	# One secret per cluster: authenticates RPC, encrypts gossip, and signs
	# the demo's JWTs the same way on every node.
	[[ -f "$run_dir/secret" ]] || od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$run_dir/secret"
	for ((k = 1; k <= n; k++)); do
		if [[ "$k" -eq 1 ]]; then
			start_node 1
			local deadline=$((SECONDS + WAIT_SECONDS))
			until [[ "$(members 1)" -ge 1 ]]; do
				running 1 || die "node 1 exited; see $run_dir/node1.log"
				((SECONDS < deadline)) || die "node 1 not up after ${WAIT_SECONDS}s; see $run_dir/node1.log"
				sleep 0.1
			done
		else
			start_node "$k" 1
		fi
	done
	wait_members "$n"
	echo "ratemesh cluster of $n nodes is up:"
	table
}

cmd_down() {
	local n pid
	n="$(size)"
	for ((k = 1; k <= n; k++)); do
		running "$k" && kill -TERM "$(node_pid "$k")"
	done
	local deadline=$((SECONDS + 10))
	for ((k = 1; k <= n; k++)); do
		while running "$k"; do
			if ((SECONDS >= deadline)); then
				pid="$(node_pid "$k")"
				echo "node $k did not leave in time; SIGKILL $pid"
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.1
		done
		rm -f "$run_dir/node$k.pid"
	done
	rm -f "$run_dir/size"
	echo "cluster down (logs kept in run/cluster/)"
}

cmd_status() {
	local n
	n="$(size)"
	table
	for ((k = 1; k <= n; k++)); do
		echo
		echo "node$k sees:"
		if running "$k"; then
			curl -fsS --max-time 2 "http://127.0.0.1:$(http_port "$k")/v1/cluster/members" || echo "(no answer)"
			echo
		else
			echo "(not running)"
		fi
	done
}

cmd_logs() {
	if [[ $# -gt 0 ]]; then
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
	local alive=0 seed=""
	for ((k = 1; k <= $(size); k++)); do
		if running "$k"; then
			alive=$((alive + 1))
			[[ -z "$seed" ]] && seed="$k"
		fi
	done
	start_node "$1" "$seed"
	alive=$((alive + 1))
	wait_members "$alive"
	echo "node $1 restarted and rejoined"
	table
}

case "${1:-}" in
up) shift; cmd_up "$@" ;;
down) cmd_down ;;
status) cmd_status ;;
logs) shift; cmd_logs "$@" ;;
kill) shift; cmd_kill "$@" ;;
start) shift; cmd_start "$@" ;;
*) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
