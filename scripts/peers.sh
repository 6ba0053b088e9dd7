#!/usr/bin/env bash
# Compares ratemesh with the alternatives through a side-by-side harness:
# a directory whose run.sh runs one target under wrk and prints a SUMMARY
# line (bare Echo, Echo + Redis, Gubernator, or any command via "cmd:").
#
#   ./scripts/peers.sh HARNESS_DIR
#
# Each round runs every target once, in order, so that the machine's drift
# spreads over all of them; the table gives each round's req/s and, at the
# end, the medians and the median of the per-round ratios to bare Echo and
# to Echo + Redis. ratemesh runs as 3 nodes on this host (every node hit,
# 2 of 3 checks forwarded), started by the harness through "cmd:": as 3
# processes (target ratemesh), and as 3 nodes in one process (target
# ratemesh-1p, --nodes 3), which is how the harness runs Gubernator's 3
# daemons. The harness starts each server under setsid, so where the kernel
# shares CPU between sessions (Linux's autogroup) every target gets about
# the CPU that wrk gets: the 3 ratemesh processes share one session's
# share, while Echo + Redis runs in two sessions (Echo and redis-server).
#
# A target may carry suffixes: -hot runs it with one key for all requests
# (the harness's TP_KEYS=1: a tenant-wide limit far above the load), -r0
# runs ratemesh without replicas, -nolease without leases; e.g.
# ratemesh-hot, ratemesh-nolease-hot, redis-hot, gubernator-hot,
# ratemesh-r0.
#
# Environment: ROUNDS=5, DURATION=10s, TARGETS="bare redis ratemesh
# ratemesh-1p" (add gubernator for Gubernator), HEADERS=legacy (the nodes' --headers:
# X-RateLimit-* only, what the harness's limiting servers send; "legacy,
# retry-after,draft" is the nodes' default), PORT=18181 (HTTP ports PORT..
# PORT+2; RPC and gossip at PORT+10.. and PORT+20..), ACCURACY=1 to add the
# harness's accuracy run (1 key at 100/min, 10 s over every node) for
# ratemesh after the rounds, TSV=FILE to append every run to FILE as a line
# of round, target, req/s, p50 µs and p99 µs, tab-separated (what
# perf-table.sh reads).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10s}"
TARGETS="${TARGETS:-bare redis ratemesh ratemesh-1p}"
HEADERS="${HEADERS:-legacy}"
PORT="${PORT:-18181}"

harness="${1:-}"
[[ -n "$harness" && -x "$harness/run.sh" ]] || die "usage: $0 HARNESS_DIR (a directory holding an executable run.sh)"
harness="$(cd "$harness" && pwd)"
positive ROUNDS PORT
((PORT + 22 < 65536)) || die "PORT must leave room for 23 ports below 65536, not '$PORT'"
for p in $(seq "$PORT" $((PORT + 2))) $(seq $((PORT + 10)) $((PORT + 12))) $(seq $((PORT + 20)) $((PORT + 22))); do
	port_taken "$p" && die "port $p is taken; set PORT to a free range"
done

work="$(mktemp -d -t ratemesh-peers.XXXXXX)"
trap 'rm -rf "$work"' EXIT
bin="$work/ratemesh-node"
echo "== building ratemesh-node"
build_node "$bin"

# The harness runs this in its own process group, with BENCH_LIMIT and
# BENCH_WINDOW (e.g. 1m) set, and stops the group after each mode. It
# starts the nodes as every script does (lib.sh's start_cluster), on the
# ports the harness is told; with the argument 1p it runs the 3 nodes in
# one process.
cat >"$work/cluster3.sh" <<EOF
#!/usr/bin/env bash
set -euo pipefail
source "$root/scripts/lib.sh"
bin="$bin"
window="\${BENCH_WINDOW:-1m}"
case "\$window" in
*s) unit=second ;;
*m) unit=minute ;;
*h) unit=hour ;;
*) die "cannot read BENCH_WINDOW '\$window'" ;;
esac
dir="\$(mktemp -d "$work/run.XXXXXX")"
printf 'routes:\n  - method: GET\n    path: /products\n    limits: "%s per %s %s"\n' \\
	"\${BENCH_LIMIT:-1000000}" "\${window%?}" "\$unit" >"\$dir/policy.yaml"
export RATEMESH_SECRET="$(random_secret)"
node_http_base=$PORT node_rpc_base=$((PORT + 10)) node_gossip_base=$((PORT + 20))
processes=3
[[ "\${1:-}" != 1p ]] || processes=1
start_cluster 3 "\$processes" "\$dir" --demo=true --policy "\$dir/policy.yaml" --headers "$HEADERS" --log-level warn
wait
EOF
chmod +x "$work/cluster3.sh"
addrs="127.0.0.1:$PORT,127.0.0.1:$((PORT + 1)),127.0.0.1:$((PORT + 2))"

# run TARGET prints "rps p50_us p99_us" of one throughput run.
run() {
	local base="$1" spec line vars=()
	if [[ "$base" == *-hot ]]; then
		vars+=(TP_KEYS=1)
		base="${base%-hot}"
	fi
	if [[ "$base" == *-nolease ]]; then
		vars+=(RATEMESH_LEASES=false)
		base="${base%-nolease}"
	fi
	if [[ "$base" == *-r0 ]]; then
		vars+=(RATEMESH_REPLICAS=0)
		base="${base%-r0}"
	fi
	spec="$base"
	[[ "$base" == ratemesh ]] && spec="cmd:$work/cluster3.sh@$addrs"
	[[ "$base" == ratemesh-1p ]] && spec="cmd:$work/cluster3.sh 1p@$addrs"
	line="$(env "${vars[@]}" MODES=throughput LABEL="$1" "$harness/run.sh" "$spec" "$DURATION" 2>"$work/run.log" | grep '^SUMMARY ')" ||
		die "no SUMMARY from the harness for $1: $(tail -n 5 "$work/run.log")"
	if [[ " $line" != *" 429s=0 "* || " $line" != *" errors=0"* ]]; then
		echo "peers.sh: warning: not every answer was a 200 in the throughput run of $1: $line" >&2
	fi
	for f in rps p50_us p99_us; do
		grep -o " $f=[0-9]*" <<<" $line" | cut -d= -f2
	done | paste -sd' '
}

echo "== $ROUNDS round(s) of $DURATION per target: $TARGETS ($(date -u +'%Y-%m-%d %H:%M UTC'), $(machine))"
printf '%-6s %-12s %8s %8s %8s %7s %7s\n' round target req/s p50_us p99_us x_bare x_redis
declare -A rps_of ratios
for ((round = 1; round <= ROUNDS; round++)); do
	declare -A this=()
	for t in $TARGETS; do
		out="$(run "$t")"
		read -r rps p50 p99 <<<"$out"
		this[$t]="$rps"
		rps_of[$t]+=" $rps"
		printf '%-6s %-12s %8s %8s %8s' "$round" "$t" "$rps" "$p50" "$p99"
		[[ -z "${TSV:-}" ]] || printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$t" "$rps" "$p50" "$p99" >>"$TSV"
		for base in bare redis; do
			if [[ -n "${this[$base]:-}" ]]; then
				r="$(awk -v a="$rps" -v b="${this[$base]}" 'BEGIN {printf "%.3f", a / b}')"
				ratios[$t.$base]+=" $r"
				printf ' %7s' "$r"
			else
				printf ' %7s' -
			fi
		done
		echo
	done
	unset this
done

echo "== medians"
printf '%-12s %8s %7s %7s\n' target req/s x_bare x_redis
for t in $TARGETS; do
	# shellcheck disable=SC2086 # the lists are space-separated numbers
	printf '%-12s %8s %7s %7s\n' "$t" "$(median ${rps_of[$t]})" \
		"$([[ -n "${ratios[$t.bare]:-}" ]] && median ${ratios[$t.bare]} || echo -)" \
		"$([[ -n "${ratios[$t.redis]:-}" ]] && median ${ratios[$t.redis]} || echo -)"
done

if [[ "${ACCURACY:-0}" == 1 ]]; then
	echo "== accuracy: 1 key at 100 per minute, 10 s over every node"
	for arg in "" " 1p"; do
		MODES=accuracy LABEL="ratemesh${arg:+-1p}" "$harness/run.sh" "cmd:$work/cluster3.sh$arg@$addrs" 2>"$work/run.log" | grep '^SUMMARY ' ||
			die "no SUMMARY from the harness's accuracy run: $(tail -n 5 "$work/run.log")"
	done
fi
