#!/usr/bin/env bash
# Benchmarks ratemesh on this machine.
#
#   ./scripts/bench.sh          Go benchmarks, then HTTP load with wrk
#   ./scripts/bench.sh go       only the Go benchmarks (go test -bench -benchmem)
#   ./scripts/bench.sh http     only the HTTP load
#
# The HTTP part builds bin/ratemesh-node and runs wrk against the demo's
# GET /products with KEYS client keys (X-API-KEY, see bench_keys.lua):
#
#   bare             1 node, /products exempt (the limiter skipped: Echo alone)
#   unlimited        1 node, /products checked on every request, limit lifted
#                    to 1000000000 per minute so nothing is denied
#   limited          1 node, the demo's own policy (5 per minute per key)
#   bare-t3          as bare, with the cluster's thread count (a multiple of 3)
#   bare-x3          3 node processes, /products exempt: the ceiling of any
#                    3-process cluster on this machine
#   cluster          3 nodes, limit lifted, wrk threads spread round-robin
#                    over the three nodes (2 of 3 checks are forwarded)
#   cluster-limited  3 nodes, the demo's policy
#   cluster-1p       3 nodes in one process (--nodes 3), limit lifted: the
#                    same cluster without a Go runtime per node
#   cluster-hot      3 nodes, limit lifted, every request on ONE key (a
#                    tenant-wide limit): the key's owner would see every
#                    check but for leases
#
# and prints req/s, p50, p99, the ratio to the unlimited run with as many
# nodes (x_unlim) and the ratio to the bare run with as many wrk threads
# (x_bare), all from this invocation. With ROUNDS > 1 the scenarios repeat
# round by round and the medians follow. wrk, the nodes and the Go runtime
# share the machine: compare ratios from one invocation, not absolute
# figures from different ones.
# Nodes listen on ports the system picks, are restarted for every scenario
# and are always stopped on exit.
#
# Who gets the CPU: by default wrk runs in this script's session, with the
# nodes, so the kernel shares the CPUs thread by thread and the figures
# show what the nodes cost. With WRK_SESSION=own, wrk runs in a session of
# its own (setsid); where the kernel shares CPU between sessions (Linux's
# autogroup), wrk and the nodes then get half the machine each whatever
# their thread counts. That is how a harness that starts every server under
# setsid measures, and one node then often saturates wrk, not itself.
#
# Environment: DURATION=5s (each measured wrk run), WARMUP=1s (0: none),
# THREADS=2, CONNS=64, KEYS=10000, ROUNDS=1, SCENARIOS (a subset, in order),
# HEADERS (the nodes' --headers; default: every family), WRK_SESSION
# (shared or own, above; default shared), BENCHTIME=1s
# (go test -benchtime), WAIT_SECONDS=30 (node readiness).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

lua="$root/scripts/bench_keys.lua"

DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-1s}"
THREADS="${THREADS:-2}"
CONNS="${CONNS:-64}"
KEYS="${KEYS:-10000}"
ROUNDS="${ROUNDS:-1}"
BENCHTIME="${BENCHTIME:-1s}"
WAIT_SECONDS="${WAIT_SECONDS:-30}"
HEADERS="${HEADERS:-legacy,retry-after,draft}"
SCENARIOS="${SCENARIOS:-bare unlimited limited bare-t3 bare-x3 cluster cluster-limited cluster-1p}"
WRK_SESSION="${WRK_SESSION:-shared}"

positive THREADS CONNS KEYS ROUNDS WAIT_SECONDS
case "$WRK_SESSION" in
shared) wrk=(wrk) ;;
own) wrk=(setsid -w wrk) ;;
*) die "WRK_SESSION must be shared or own, not '$WRK_SESSION'" ;;
esac

work=""
pids=()

# stop_nodes stops every node this script started: a graceful leave, and
# SIGKILL for those still running after a deadline.
stop_nodes() {
	stop_pids 10 "${pids[@]}"
	pids=()
}

cleanup() {
	local rc=$?
	stop_nodes
	if [[ -n "$work" ]]; then
		if ((rc == 0)); then
			rm -rf "$work"
		else
			echo "bench.sh: node and wrk logs kept in $work" >&2
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- Go

go_benchmarks() {
	local log
	log="$(mktemp -t ratemesh-gobench.XXXXXX)"
	echo "== Go benchmarks: go test -run='^\$' -bench . -benchmem -benchtime $BENCHTIME"
	echo "   (./bucket ./ring ./internal/rpc ./httpapi, and BenchmarkForwardedCheck and BenchmarkOwnerCheck of the root package)"
	if ! (cd "$root" &&
		go test -run='^$' -bench . -benchmem -benchtime "$BENCHTIME" ./bucket ./ring ./internal/rpc ./httpapi &&
		go test -run='^$' -bench 'ForwardedCheck|OwnerCheck' -benchmem -benchtime "$BENCHTIME" .) >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		die "go test -bench failed"
	fi
	grep -E '^(Benchmark|pkg:|cpu:|ok|FAIL)' "$log" || true
	rm -f "$log"
	echo
}

# ---------------------------------------------------------------- HTTP

# start_node NAME POLICY JOIN [NODES] starts one node process (POLICY: a
# policy file, or "" for the demo's own; JOIN: a gossip address, or "";
# NODES: how many nodes the process runs, default 1) and waits until its
# nodes are up. It sets node_http (one address per node) and node_gossip
# (the first node's) from the process's address file.
start_node() {
	local name="$1" policy="$2" join="$3" nodes="${4:-1}"
	local log="$work/$scenario_name.r$round.$name.log" file="$work/$name.addr.json"
	local args=(--name "$name" --bind 127.0.0.1 --http-port 0 --gossip-port 0 --rpc-port 0
		--gossip-profile local --demo=true --headers "$HEADERS"
		--shutdown-timeout 2s --log-level info --nodes "$nodes")
	[[ -n "$policy" ]] && args+=(--policy "$policy")
	[[ -n "$join" ]] && args+=(--join "$join")
	RATEMESH_SECRET="$secret" launch_node "$log" "$file" "$bin" "${args[@]}"
	pids+=("$launched_pid")
	wait_addr_file "$file" "$launched_pid" "$WAIT_SECONDS" "$log"
	mapfile -t node_http < <(addr_field "$file" http)
	node_gossip="$(addr_field "$file" gossip | head -n 1)"
}

# start_cluster N POLICY [ONE_PROCESS] starts N nodes joined into one
# cluster, as N processes or, with ONE_PROCESS=1, as one process running N
# nodes, and waits until every node reports N members alive and is ready. It
# sets addrs to the comma-separated HTTP addresses.
start_cluster() {
	local n="$1" policy="$2" one="${3:-0}" join="" k
	local list=()
	if ((one)); then
		start_node nodes "$policy" "" "$n"
		list=("${node_http[@]}")
	else
		for ((k = 1; k <= n; k++)); do
			start_node "node$k" "$policy" "$join"
			[[ -z "$join" ]] && join="$node_gossip"
			list+=("${node_http[@]}")
		done
	fi
	wait_members "$WAIT_SECONDS" "$n" "${list[@]}"
	addrs="$(
		IFS=,
		echo "${list[*]}"
	)"
}

# run_wrk NAME THREADS CONNS runs the warm-up and the measured run against
# addrs and sets r_rps, r_p50, r_p99 (µs), r_2xx, r_429 and r_errors.
run_wrk() {
	local name="$1" t="$2" c="$3" log="$work/wrk.$1.r$round.log" line keys="$KEYS"
	local url="http://${addrs%%,*}/products"
	[[ "$name" == *-hot ]] && keys=1
	if [[ "$WARMUP" != 0 ]]; then
		BENCH_ADDRS="$addrs" BENCH_KEYS="$keys" BENCH_PREFIX="r$round-" \
			"${wrk[@]}" -t"$t" -c"$c" -d"$WARMUP" -s "$lua" "$url" >"$log.warmup" 2>&1 ||
			die "wrk warm-up failed: $(cat "$log.warmup")"
	fi
	BENCH_ADDRS="$addrs" BENCH_KEYS="$keys" BENCH_PREFIX="r$round-" \
		"${wrk[@]}" -t"$t" -c"$c" -d"$DURATION" -s "$lua" "$url" >"$log" 2>&1 ||
		die "wrk failed: $(cat "$log")"
	line="$(grep '^RESULT ' "$log" | tail -n1)" || die "no RESULT line from wrk: $(cat "$log")"
	r_rps="$(field rps "$line")"
	r_p50="$(field p50_us "$line")"
	r_p99="$(field p99_us "$line")"
	r_2xx="$(field s2xx "$line")"
	r_429="$(field s429 "$line")"
	r_errors=$(($(field other "$line") + $(field sockerr "$line")))
}

# field NAME LINE prints the value of NAME=value in LINE.
field() {
	local v
	v="$(grep -o " $1=[^ ]*" <<<" $2" | cut -d= -f2)" || die "no $1 in: $2"
	echo "$v"
}

# scenario NAME runs one scenario and appends its row to the results.
scenario() {
	local name="$1" nodes=1 policy="" t="$THREADS" one=0
	scenario_name="$name"
	case "$name" in
	bare | bare-t3 | bare-x3) policy="$work/exempt.yaml" ;;
	unlimited | cluster | cluster-hot) policy="$work/lifted.yaml" ;;
	cluster-1p) policy="$work/lifted.yaml" one=1 ;;
	limited | cluster-limited) policy="" ;;
	*) die "unknown scenario '$name' (want: bare unlimited limited bare-t3 bare-x3 cluster cluster-limited cluster-1p cluster-hot)" ;;
	esac
	case "$name" in
	cluster* | bare-x3) nodes=3 ;;
	esac
	case "$name" in
	cluster* | bare-t3 | bare-x3) t=$(((THREADS + 2) / 3 * 3)) ;; # threads are spread over 3 nodes
	esac
	local c=$((CONNS / t * t))
	((c >= t)) || c="$t"
	start_cluster "$nodes" "$policy" "$one"
	run_wrk "$name" "$t" "$c"
	stop_nodes
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$nodes" "$t" "$c" \
		"$r_rps" "$r_p50" "$r_p99" "$r_2xx" "$r_429" "$r_errors" >>"$work/results.tsv"
}

# report prints the rows of round R (or, for R = median, the medians of
# every round) with their ratios: to the unlimited run of the same round
# with as many nodes (none for cluster-1p and bare-x3, which have no
# such twin), and to the bare run of the same round with as many threads.
report() {
	awk -F'\t' -v want="$1" '
	function median(list,   a, n, i, j, t) {
		n = split(list, a, " ")
		for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	{ rps[$1, $2] = $6; thr[$2] = $4; row[NR] = $0 }
	END {
		printf "%-16s %5s %8s %10s %8s %8s %10s %10s %7s %7s %7s\n", "scenario", "nodes", "thr/conn", "req/s", "p50_us", "p99_us", "2xx", "429", "errors", "x_unlim", "x_bare"
		for (i = 1; i <= NR; i++) {
			split(row[i], f, "\t")
			r = f[1]; s = f[2]
			bare = (thr[s] == thr["bare-t3"] && thr[s] != thr["bare"]) ? "bare-t3" : "bare"
			unl = (s == "cluster-1p" || s == "bare-x3") ? "" : (f[3] > 1) ? "cluster" : "unlimited"
			xu = ((r, unl) in rps) ? sprintf("%.3f", f[6] / rps[r, unl]) : "-"
			xb = ((r, bare) in rps) ? sprintf("%.3f", f[6] / rps[r, bare]) : "-"
			if (want == "median") {
				if (!(s in seen)) { seen[s] = 1; order[++ns] = s; nodes[s] = f[3]; tc[s] = f[4] "/" f[5] }
				m_rps[s] = m_rps[s] " " f[6]; m_p50[s] = m_p50[s] " " f[7]; m_p99[s] = m_p99[s] " " f[8]
				m_2xx[s] = m_2xx[s] " " f[9]; m_429[s] = m_429[s] " " f[10]; m_err[s] = m_err[s] " " f[11]
				if (xu != "-") m_xu[s] = m_xu[s] " " xu
				if (xb != "-") m_xb[s] = m_xb[s] " " xb
			} else if (r == want) {
				printf "%-16s %5s %8s %10s %8s %8s %10s %10s %7s %7s %7s\n", s, f[3], f[4] "/" f[5], f[6], f[7], f[8], f[9], f[10], f[11], xu, xb
			}
		}
		for (k = 1; k <= ns; k++) {
			s = order[k]
			printf "%-16s %5s %8s %10.0f %8.0f %8.0f %10.0f %10.0f %7.0f %7s %7s\n", s, nodes[s], tc[s], median(m_rps[s]), median(m_p50[s]), median(m_p99[s]), median(m_2xx[s]), median(m_429[s]), median(m_err[s]), m_xu[s] == "" ? "-" : sprintf("%.3f", median(m_xu[s])), m_xb[s] == "" ? "-" : sprintf("%.3f", median(m_xb[s]))
		}
	}' "$work/results.tsv"
}

http_benchmarks() {
	need go wrk curl
	work="$(mktemp -d -t ratemesh-bench.XXXXXX)"
	secret="$(random_secret)"
	: >"$work/results.tsv"
	cat >"$work/lifted.yaml" <<'EOF'
routes:
  - method: GET
    path: /products
    limits: "1000000000 per minute"
EOF
	cat >"$work/exempt.yaml" <<'EOF'
routes:
  - method: GET
    path: /products
    exempt: true
EOF
	echo "== building $bin"
	build_node "$bin"
	echo "== wrk: GET /products, $KEYS client keys, ${DURATION} per run after a ${WARMUP} warm-up, $ROUNDS round(s)"
	echo "   $(date -u +'%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)"
	for ((round = 1; round <= ROUNDS; round++)); do
		local s
		for s in $SCENARIOS; do
			scenario "$s"
		done
		echo
		echo "-- round $round"
		report "$round"
	done
	if ((ROUNDS > 1)); then
		echo
		echo "-- median of $ROUNDS rounds (ratios: median of the per-round ratios)"
		report median
	fi
}

case "${1:-all}" in
all)
	go_benchmarks
	http_benchmarks
	;;
go) go_benchmarks ;;
http) http_benchmarks ;;
*) die "usage: $0 [all|go|http]" ;;
esac
