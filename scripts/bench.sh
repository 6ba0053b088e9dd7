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

# stop_nodes stops every node this script started (by the pid files
# start_cluster leaves): a graceful leave, and SIGKILL for those still
# running after a deadline.
stop_nodes() {
	local f pids=()
	[[ -n "$work" ]] || return 0
	for f in "$work"/*/node*.pid; do
		[[ -f "$f" ]] || continue
		pids+=("$(cat "$f")")
		rm -f "$f"
	done
	stop_pids 10 "${pids[@]}"
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

# start_bench_cluster N POLICY [ONE_PROCESS] starts N nodes with lib.sh's
# start_cluster and the benchmark's flags (POLICY: a policy file, or "" for
# the demo's own), as N processes or, with ONE_PROCESS=1, as one process
# running N nodes. It sets addrs to the comma-separated HTTP addresses.
start_bench_cluster() {
	local n="$1" policy="$2" one="${3:-0}" processes="$1" dir="$work/$scenario_name.r$round"
	local flags=(--demo=true --headers "$HEADERS" --shutdown-timeout 2s --log-level info)
	[[ -z "$policy" ]] || flags+=(--policy "$policy")
	((one == 0)) || processes=1
	mkdir -p "$dir"
	start_cluster "$n" "$processes" "$dir" "${flags[@]}"
	addrs="$(
		IFS=,
		echo "${cluster_http[*]}"
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
	start_bench_cluster "$nodes" "$policy" "$one"
	run_wrk "$name" "$t" "$c"
	stop_nodes
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$nodes" "$t" "$c" \
		"$r_rps" "$r_p50" "$r_p99" "$r_2xx" "$r_429" "$r_errors" >>"$work/results.tsv"
}

# with_ratios prints every row of the results with two more columns: the
# ratio to the unlimited run of the same round with as many nodes (none,
# "-", for cluster-1p and bare-x3, which have no such twin), and to the bare
# run of the same round with as many threads.
with_ratios() {
	awk -F'\t' -v OFS='\t' '
	{ rps[$1, $2] = $6; thr[$2] = $4; row[NR] = $0 }
	END {
		for (i = 1; i <= NR; i++) {
			split(row[i], f, "\t")
			r = f[1]; s = f[2]
			bare = (thr[s] == thr["bare-t3"] && thr[s] != thr["bare"]) ? "bare-t3" : "bare"
			unl = (s == "cluster-1p" || s == "bare-x3") ? "" : (f[3] > 1) ? "cluster" : "unlimited"
			xu = ((r, unl) in rps) ? sprintf("%.3f", f[6] / rps[r, unl]) : "-"
			xb = ((r, bare) in rps) ? sprintf("%.3f", f[6] / rps[r, bare]) : "-"
			print row[i], xu, xb
		}
	}' "$work/results.tsv"
}

report_format='%-16s %5s %8s %10s %8s %8s %10s %10s %7s %7s %7s\n'

# report R prints the rows of round R with their ratios.
report() {
	# shellcheck disable=SC2059 # the format is the table's
	printf "$report_format" scenario nodes thr/conn req/s p50_us p99_us 2xx 429 errors x_unlim x_bare
	with_ratios | awk -F'\t' -v want="$1" -v fmt="$report_format" \
		'$1 == want { printf fmt, $2, $3, $4 "/" $5, $6, $7, $8, $9, $10, $11, $12, $13 }'
}

# report_median prints, scenario by scenario in the order they ran, the
# median of every column over the rounds (lib.sh's median), the ratios'
# being the medians of the per-round ratios.
report_median() {
	local rows s
	rows="$(with_ratios)"
	# shellcheck disable=SC2059 # the format is the table's
	printf "$report_format" scenario nodes thr/conn req/s p50_us p99_us 2xx 429 errors x_unlim x_bare
	local one cols c vals
	while read -r s; do
		cols=()
		one="$(awk -F'\t' -v s="$s" '$2 == s' <<<"$rows")"
		for c in 6 7 8 9 10 11 12 13; do
			vals="$(cut -f"$c" <<<"$one" | grep -v '^-$' || true)"
			if [[ -z "$vals" ]]; then
				cols+=(-)
			elif ((c >= 12)); then
				# shellcheck disable=SC2086 # a list of numbers, one a line
				cols+=("$(printf '%.3f' "$(median $vals)")")
			else
				# shellcheck disable=SC2086 # a list of numbers, one a line
				cols+=("$(printf '%.0f' "$(median $vals)")")
			fi
		done
		# shellcheck disable=SC2059 # the format is the table's
		printf "$report_format" "$s" "$(cut -f3 <<<"$one" | head -n1)" "$(cut -f4,5 <<<"$one" | head -n1 | tr '\t' /)" "${cols[@]}"
	done < <(cut -f2 <<<"$rows" | awk '!seen[$0]++')
}

http_benchmarks() {
	need go wrk curl
	work="$(mktemp -d -t ratemesh-bench.XXXXXX)"
	RATEMESH_SECRET="$(random_secret)"
	export RATEMESH_SECRET
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
	echo "   $(date -u +'%Y-%m-%d %H:%M UTC'), $(machine), $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)"
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
		report_median
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
