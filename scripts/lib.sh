# shellcheck shell=bash
# What the scripts in this directory share. Each sources it first:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It sets root (the repository) and bin (where the node binary is built),
# and defines:
#
#   die MESSAGE...               print "SCRIPT: MESSAGE" on stderr, exit 1
#   need COMMAND...              die unless every command is installed, saying
#                                how to get the missing one
#   positive NAME...             die unless each named variable is a whole number > 0
#   random_secret                print a fresh cluster secret
#   build_node OUT               go build the node to OUT
#   need_bin                     build $bin unless it is there already
#   cli ADDR COMMAND [ARGS...]   run the node binary's COMMAND (members, top,
#                                limits, ...) against the node at ADDR
#   port_taken PORT              true when something listens on 127.0.0.1:PORT
#   launch_node LOG FILE CMD...  start CMD (the node and its flags) in the
#                                background with --addr-file FILE, logging to
#                                LOG; sets launched_pid
#   wait_addr_file FILE PID SECONDS LOG
#                                wait until node process PID has written FILE
#   addr_field FILE FIELD        print FIELD (name, http, gossip, rpc or grpc) of
#                                every node in FILE, one per line
#   alive_members ADDR           print how many members the node at ADDR
#                                reports alive (0 if it does not answer)
#   wait_members SECONDS N URL...
#                                wait until every node at URL reports N members
#                                alive and is ready
#   stop_pids SECONDS PID...     SIGTERM each process (a graceful leave), then
#                                SIGKILL those still running after SECONDS
#   start_cluster_node K DIR JOIN [FLAG...]
#                                start node K (named nodeK) on 127.0.0.1 in
#                                the background, joining JOIN (a gossip
#                                address, or ""), with FLAGs; wait until it
#                                is up (WAIT_SECONDS, default 30); sets node_pid
#   start_cluster NODES PROCESSES DIR [FLAG...]
#                                start NODES nodes in NODES processes, each
#                                joining node 1, or in one (PROCESSES 1,
#                                --nodes NODES), and wait until every node
#                                reports NODES members alive and is ready;
#                                sets cluster_pids, cluster_http, cluster_grpc
#   median NUMBER...             print the median (of an even count, the mean
#                                of the middle two)
#   machine                      print what this machine is, for a benchmark's
#                                figures: CPU model, CPUs, kernel
#
# Every script starts its nodes with start_cluster_node (most through
# start_cluster): in DIR, node K logs to nodeK.log, writes its addresses to
# nodeK.json and its pid to nodeK.pid. Its ports are node_http_base+K-1,
# node_gossip_base+K-1 and node_rpc_base+K-1 when the script sets those,
# else ports the system picks. The cluster's secret is RATEMESH_SECRET,
# which the script exports: never a flag, which ps shows to every user.
#
# Every JSON answer and file is read by the node binary itself ($bin, which a
# script builds first: `json FILE --format` and its commands' --format), so
# the scripts need nothing but bash, Go and curl.

# shellcheck disable=SC2034 # root and bin are for the scripts that source this
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/bin/ratemesh-node"
lib_script="$(basename "$0")"

die() {
	echo "$lib_script: $*" >&2
	exit 1
}

need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null || die "$c is needed; $(how_to_get "$c")"
	done
}

# how_to_get COMMAND says where a missing command comes from.
how_to_get() {
	case "$1" in
	go) echo "install Go from https://go.dev/dl/ (the version in go.mod or later) and put it on PATH" ;;
	redis-cli) echo "Debian/Ubuntu: apt-get install redis-tools" ;;
	*) echo "Debian/Ubuntu: apt-get install $1" ;;
	esac
}

positive() {
	local v
	for v in "$@"; do
		[[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive whole number, not '${!v}'"
	done
}

random_secret() {
	od -An -tx1 -N16 /dev/urandom | tr -d ' \n'
}

build_node() {
	local out="$1"
	mkdir -p "$(dirname "$out")"
	(cd "$root" && go build -o "$out" ./cmd/node) || die "go build ./cmd/node failed"
}

need_bin() {
	[[ -x "$bin" ]] || build_node "$bin"
}

cli() {
	local addr="$1"
	shift
	"$bin" "$@" --addr "$addr"
}

port_taken() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

launch_node() {
	local log="$1" file="$2"
	shift 2
	# A file left by an earlier run must not pass for this one's.
	rm -f "$file"
	"$@" --addr-file "$file" >>"$log" 2>&1 &
	# shellcheck disable=SC2034 # the result, read by the caller
	launched_pid=$!
}

wait_addr_file() {
	local file="$1" pid="$2" deadline=$((SECONDS + $3)) log="$4"
	# The node writes the file atomically once it is up and joined; the pid
	# tells it from a file a killed process left behind.
	until [[ -f "$file" ]] && [[ "$("$bin" json "$file" --format '{{.pid}}' 2>/dev/null)" == "$pid" ]]; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$log" >&2
			die "the node (pid $pid) exited during its start; see $log"
		fi
		((SECONDS < deadline)) || die "the node (pid $pid) did not start within $3 s; see $log"
		sleep 0.05
	done
}

addr_field() {
	"$bin" json "$1" --format "{{range .nodes}}{{.$2}}{{\"\\n\"}}{{end}}"
}

alive_members() {
	local alive
	# One dot per member alive.
	alive="$("$bin" members --addr "$1" --timeout 1s --format '{{range .}}{{if eq .state "alive"}}.{{end}}{{end}}' 2>/dev/null)" || alive=""
	echo "${#alive}"
}

wait_members() {
	local deadline=$((SECONDS + $1)) want="$2" a
	shift 2
	for a in "$@"; do
		until (($(alive_members "$a") == want)) && curl -fsS -o /dev/null --max-time 1 "http://$a/readyz" 2>/dev/null; do
			((SECONDS < deadline)) || die "$a does not report $want ready members alive after the wait; members: $(curl -sS --max-time 1 "http://$a/v1/cluster/members" 2>&1)"
			sleep 0.05
		done
	done
}

stop_pids() {
	local deadline=$((SECONDS + $1)) pid
	shift
	for pid in "$@"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "$@"; do
		while kill -0 "$pid" 2>/dev/null; do
			if ((SECONDS >= deadline)); then
				echo "$lib_script: pid $pid did not stop in time; SIGKILL" >&2
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.05
		done
		# Reaps our own children; for others' processes it does nothing.
		wait "$pid" 2>/dev/null || true
	done
}

# node_port BASE K prints port BASE+K-1, or 0 (the system picks) for no BASE.
node_port() {
	if [[ -n "$1" ]]; then
		echo $(($1 + $2 - 1))
	else
		echo 0
	fi
}

start_cluster_node() {
	local k="$1" dir="$2" join="$3" p
	shift 3
	[[ -n "${RATEMESH_SECRET:-}" ]] || die "RATEMESH_SECRET is not set (the nodes' secret goes by environment)"
	export RATEMESH_SECRET
	local http gossip rpc
	http="$(node_port "${node_http_base:-}" "$k")"
	gossip="$(node_port "${node_gossip_base:-}" "$k")"
	rpc="$(node_port "${node_rpc_base:-}" "$k")"
	for p in "$http" "$gossip" "$rpc"; do
		((p == 0)) || ! port_taken "$p" || die "port $p (node $k) is taken; choose other ports"
	done
	local args=(--name "node$k" --bind 127.0.0.1 --gossip-profile local
		--http-port "$http" --gossip-port "$gossip" --rpc-port "$rpc")
	[[ -z "$join" ]] || args+=(--join "$join")
	# nohup: a node outlives the terminal that started it; the scripts stop
	# their nodes themselves.
	launch_node "$dir/node$k.log" "$dir/node$k.json" nohup "$bin" "${args[@]}" "$@"
	node_pid="$launched_pid"
	echo "$node_pid" >"$dir/node$k.pid"
	wait_addr_file "$dir/node$k.json" "$node_pid" "${WAIT_SECONDS:-30}" "$dir/node$k.log"
}

start_cluster() {
	local nodes="$1" processes="$2" dir="$3" k join="" field
	shift 3
	# shellcheck disable=SC2034 # the results, read by the caller
	cluster_pids=() cluster_http=() cluster_grpc=()
	if ((processes == 1 && nodes > 1)); then
		start_cluster_node 1 "$dir" "" --nodes "$nodes" "$@"
		cluster_pids+=("$node_pid")
	else
		for ((k = 1; k <= nodes; k++)); do
			start_cluster_node "$k" "$dir" "$join" "$@"
			cluster_pids+=("$node_pid")
			[[ -n "$join" ]] || join="$(addr_field "$dir/node1.json" gossip)"
		done
	fi
	for ((k = 1; k <= ${#cluster_pids[@]}; k++)); do
		while read -r field; do cluster_http+=("$field"); done < <(addr_field "$dir/node$k.json" http)
		# A node without the rate limit service has no grpc address (index,
		# unlike .grpc, prints <no value> for a missing one).
		while read -r field; do
			[[ -z "$field" || "$field" == "<no value>" ]] || cluster_grpc+=("$field")
		done < <("$bin" json "$dir/node$k.json" --format '{{range .nodes}}{{index . "grpc"}}{{"\n"}}{{end}}')
	done
	wait_members "${WAIT_SECONDS:-30}" "$nodes" "${cluster_http[@]}"
}

median() {
	printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {m = int((NR + 1) / 2); print (NR % 2 ? v[m] : (v[m] + v[m + 1]) / 2)}'
}

machine() {
	local model
	model="$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
	echo "${model:-$(uname -m)}, $(nproc) CPUs, $(uname -s) $(uname -r)"
}
