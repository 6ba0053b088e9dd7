#!/usr/bin/env bash
# Produces the performance tables of README.md and docs/performance.md from
# one run each, so that the figures shown are the latest run's and say where
# they come from.
#
#   ./scripts/perf-table.sh [--write] HARNESS_DIR
#       side by side: 3 ratemesh node processes with the presets (one
#       replica a key, leases on), the same with --replicas 0, bare Echo and
#       Echo with a Redis fixed-window limiter, all through the side-by-side
#       harness that peers.sh drives (see its header): GET /products, 10,000
#       client keys, a limit far above the load so that every answer is a
#       200. The table of README.md and docs/performance.md (block
#       perf-table).
#   ./scripts/perf-table.sh [--write] demo
#       the demo's GET /products under bench.sh http (see its header): one
#       node and 3, exempt, checked and limited. docs/performance.md only
#       (block perf-table:demo).
#
# Each prints its block; with --write it also puts the block between the
# lines <!-- BLOCK:begin --> and <!-- BLOCK:end --> of its pages. A block
# is a line saying when (UTC), on what machine (CPU model, CPUs, kernel),
# at which commit and by which command the figures were made, then a row a
# target or scenario: the median req/s and its range over the rounds, the
# median p50 and p99, and the median (and range) of the per-round ratios;
# side by side, also replicas 1 over replicas 0, round by round. The load
# generator, the servers and the nodes share this machine: the ratios are
# what carries over to another.
#
# Environment: ROUNDS=3, DURATION=10s (each measured run); side by side,
# TARGETS="bare redis ratemesh ratemesh-r0" (any of peers.sh's targets;
# bare and redis must be among them) and those of peers.sh and the harness
# (HEADERS, PORT, THREADS, CONNS, WARMUP); for demo, those of bench.sh
# (THREADS, CONNS, KEYS, HEADERS, WARMUP, WRK_SESSION, SCENARIOS). Every
# RATEMESH_* variable reaches the nodes. The block's command names every
# one of these that is set.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
TARGETS="${TARGETS:-bare redis ratemesh ratemesh-r0}"

write=0
if [[ "${1:-}" == --write ]]; then
	write=1
	shift
fi
[[ $# == 1 ]] || die "usage: $0 [--write] HARNESS_DIR|demo"
positive ROUNDS
if [[ "$1" == demo ]]; then
	what=demo block_name=perf-table:demo pages=(docs/performance.md)
else
	what=peers block_name=perf-table pages=(README.md docs/performance.md)
	harness="$1"
	[[ -x "$harness/run.sh" ]] || die "$harness is no side-by-side harness: it holds no executable run.sh"
	[[ " $TARGETS " == *" bare "* && " $TARGETS " == *" redis "* ]] || die "TARGETS must hold bare and redis, not '$TARGETS'"
fi
begin="<!-- $block_name:begin -->"
end="<!-- $block_name:end -->"
if ((write)); then
	for page in "${pages[@]}"; do
		if ! grep -qxF "$begin" "$root/$page" || ! grep -qxF "$end" "$root/$page"; then
			die "$page has no $begin and $end lines to write between"
		fi
	done
fi

work="$(mktemp -d -t ratemesh-perf-table.XXXXXX)"
trap 'rm -rf "$work"' EXIT
# Every run, a line each: round, target or scenario, req/s, p50 µs, p99 µs,
# then (demo) the ratio to unlimited, to bare, 2xx, 429, nodes and wrk's
# threads/connections.
runs="$work/runs.tsv"
started="$(date -u +'%Y-%m-%d %H:%M UTC')"
# The commit measured; -dirty if the tree differs from it other than in
# the pages this writes its blocks into (an earlier block of the same
# sitting is no change to what is measured).
commit="$(git -C "$root" describe --always)"
[[ -z "$(git -C "$root" status --porcelain -- . ':!README.md' ':!docs/performance.md')" ]] || commit+="-dirty"
load_before="$(cut -d' ' -f1 /proc/loadavg)"

# command_line prints this run's command as a reader would type it: the
# variables that choose what it measures, then the script and its flag.
command_line() {
	local v vars=(HEADERS PORT THREADS CONNS WARMUP) words=("ROUNDS=$ROUNDS" "DURATION=$DURATION")
	if [[ "$what" == demo ]]; then
		vars=(THREADS CONNS KEYS HEADERS WARMUP WRK_SESSION SCENARIOS)
	elif [[ "$TARGETS" != "bare redis ratemesh ratemesh-r0" ]]; then
		words+=("TARGETS=\"$TARGETS\"")
	fi
	for v in "${vars[@]}" $(compgen -e RATEMESH_ || true); do
		# The cluster's secret is the harness's own, and never printed.
		[[ "$v" != RATEMESH_SECRET && -n "${!v:-}" ]] || continue
		if [[ "${!v}" == *" "* ]]; then
			words+=("$v=\"${!v}\"")
		else
			words+=("$v=${!v}")
		fi
	done
	words+=(./scripts/perf-table.sh)
	((write == 0)) || words+=(--write)
	if [[ "$what" == demo ]]; then
		words+=(demo)
	else
		words+=(HARNESS_DIR)
	fi
	echo "${words[*]}"
}

# label TARGET prints what a target of peers.sh or a scenario of bench.sh
# is, for the table.
label() {
	local t="$1" base="${1%%-*}" l
	case "$t" in
	bare) [[ "$what" == peers ]] || l="bare: route exempt, the limiter skipped" ;;
	unlimited) l="unlimited: every request checked, limit lifted" ;;
	limited) l="limited: the demo's policy, 5 per minute a key" ;;
	bare-t3) l="bare, 3 wrk threads" ;;
	bare-x3) l="bare, 3 processes" ;;
	cluster) l="cluster: 3 processes, every node hit, limit lifted" ;;
	cluster-limited) l="cluster, the demo's policy" ;;
	cluster-1p) l="cluster in one process (\`--nodes 3\`), limit lifted" ;;
	cluster-hot) l="cluster, limit lifted, one key for every request" ;;
	esac
	if [[ -n "${l:-}" ]]; then
		echo "$l"
		return
	fi
	case "$base" in
	bare) l="bare Echo, no limiter" ;;
	redis) l="Echo + Redis, fixed window" ;;
	gubernator) l="Gubernator, 3 daemons in one process" ;;
	ratemesh) l="ratemesh, 3 processes" ;;
	*) l="$base" ;;
	esac
	[[ "$t" != ratemesh-1p* ]] || l="ratemesh, 3 nodes in one process"
	if [[ "$base" == ratemesh && "$t" != *-r0* && "$t" != *-nolease* ]]; then
		l+=" (presets: replicas 1, leases)"
	fi
	[[ "$t" != *-r0* ]] || l+=", \`--replicas 0\`"
	[[ "$t" != *-nolease* ]] || l+=", no leases"
	[[ "$t" != *-hot ]] || l+=", one key for every request"
	echo "$l"
}

# column TARGET N prints field N of TARGET's runs (see runs), round by
# round.
column() {
	awk -F'\t' -v t="$1" -v n="$2" '$2 == t { print $n }' "$runs"
}

# ratios TARGET BASE prints TARGET's req/s over BASE's, round by round.
ratios() {
	awk -F'\t' -v t="$1" -v b="$2" '
	{ rps[$1, $2] = $3; if ($1 > last) last = $1 }
	END {
		for (r = 1; r <= last; r++)
			if ((r, t) in rps && (r, b) in rps) printf "%.2f\n", rps[r, t] / rps[r, b]
	}' "$runs"
}

# number KIND N prints N as the table shows it: KIND rps with thousands'
# commas, ms for microseconds shown as milliseconds, ratio with two
# decimals.
number() {
	case "$1" in
	rps) awk -v n="$2" 'BEGIN {
		s = sprintf("%.0f", n); o = ""
		while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
		print s o }' ;;
	ms) awk -v n="$2" 'BEGIN { printf "%.2f ms\n", n / 1000 }' ;;
	ratio) awk -v n="$2" 'BEGIN { printf "%.2f\n", n }' ;;
	esac
}

# spread KIND NUMBER... prints the median of the numbers (lib.sh's median)
# and, for rps and ratio, their range if they differ; "–" for none.
spread() {
	local kind="$1" m lo hi
	shift
	if (($# == 0)); then
		echo "–"
		return
	fi
	m="$(number "$kind" "$(median "$@")")"
	lo="$(number "$kind" "$(printf '%s\n' "$@" | sort -g | head -n1)")"
	hi="$(number "$kind" "$(printf '%s\n' "$@" | sort -g | tail -n1)")"
	if [[ "$kind" == ms || "$lo" == "$hi" ]]; then
		echo "$m"
	else
		echo "$m ($lo–$hi)"
	fi
}

# provenance SUBJECT prints the block's first lines: when, where, at which
# commit, by which command, and what was measured (SUBJECT).
provenance() {
	local rounds="$ROUNDS rounds"
	((ROUNDS > 1)) || rounds="1 round"
	echo "<!-- written by scripts/perf-table.sh from one run: run it again rather than edit these lines -->"
	echo "$started · $(machine) · commit \`$commit\` ·"
	echo "\`$(command_line)\`: $1; wrk on the"
	echo "same machine (load average $load_before at the start, $(cut -d' ' -f1 /proc/loadavg) at the end);"
	echo "$rounds of $DURATION, medians and (ranges) over the rounds."
	echo
}

# peers_block prints the side-by-side block from the runs of peers.sh.
peers_block() {
	local t r0 answers="every answer a 200"
	# peers.sh warns of a run with any other answer.
	! grep -q 'warning: not every answer' "$work/run.log" || answers="NOT every answer a 200 (see the run's warnings)"
	provenance "GET /products, 10,000 client keys, $answers"
	echo "| target | req/s | p50 | p99 | × bare Echo | × Echo + Redis |"
	echo "|---|---:|---:|---:|---:|---:|"
	for t in $TARGETS; do
		# shellcheck disable=SC2046 # lists of numbers, one a line
		printf '| %s | %s | %s | %s | %s | %s |\n' "$(label "$t")" \
			"$(spread rps $(column "$t" 3))" "$(spread ms $(column "$t" 4))" "$(spread ms $(column "$t" 5))" \
			"$(spread ratio $(ratios "$t" bare))" "$(spread ratio $(ratios "$t" redis))"
	done
	for t in $TARGETS; do
		[[ "$t" == *-r0 && " $TARGETS " == *" ${t%-r0} "* ]] || continue
		r0="$(ratios "${t%-r0}" "$t" | paste -sd' ')"
		echo
		# shellcheck disable=SC2086 # a list of numbers
		echo "Replicas 1 over 0 (\`${t%-r0}\` over \`$t\`), round by round: ${r0// /, }; median $(spread ratio $r0 | cut -d' ' -f1)."
	done
}

# demo_runs reads the rounds' tables of bench.sh's output (a "-- round N"
# line, a header, a row a scenario) into runs.
demo_runs() {
	awk -v OFS='\t' '
	/^-- round / { round = $3; header = 1; next }
	/^-- / || NF == 0 { round = ""; next }
	round && header { header = 0; next }
	round { print round, $1, $4, $5, $6, $10, $11, $7, $8, $2, $3 }' "$work/run.log" >"$runs"
	[[ -s "$runs" ]] || die "no rounds in the output of bench.sh"
}

# demo_block prints the demo's block from the runs of bench.sh.
demo_block() {
	local s
	provenance "the demo's GET /products, $(number rps "${KEYS:-10000}") client keys"
	echo "| scenario | nodes | wrk threads/conns | req/s | p50 | p99 | denied | × unlimited | × bare |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
	while read -r s; do
		# shellcheck disable=SC2046 # lists of numbers, one a line
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(label "$s")" \
			"$(column "$s" 10 | head -n1)" "$(column "$s" 11 | head -n1)" \
			"$(spread rps $(column "$s" 3))" "$(spread ms $(column "$s" 4))" "$(spread ms $(column "$s" 5))" \
			"$(awk -F'\t' -v s="$s" '$2 == s { ok += $8; no += $9 } END { printf "%.0f %%\n", 100 * no / (ok + no) }' "$runs")" \
			"$(spread ratio $(column "$s" 6 | grep -v '^-$'))" "$(spread ratio $(column "$s" 7 | grep -v '^-$'))"
	done < <(cut -f2 "$runs" | awk '!seen[$0]++')
}

if [[ "$what" == demo ]]; then
	ROUNDS="$ROUNDS" DURATION="$DURATION" "$root/scripts/bench.sh" http 2>&1 | tee "$work/run.log" >&2
	demo_runs
	demo_block >"$work/block.md"
else
	TSV="$runs" ROUNDS="$ROUNDS" DURATION="$DURATION" TARGETS="$TARGETS" "$root/scripts/peers.sh" "$harness" 2>&1 |
		tee "$work/run.log" >&2
	peers_block >"$work/block.md"
fi
cat "$work/block.md"
if ((write)); then
	for page in "${pages[@]}"; do
		awk -v b="$begin" -v e="$end" -v f="$work/block.md" '
		$0 == e { skip = 0 }
		skip { next }
		{ print }
		$0 == b { while ((getline l < f) > 0) print l; skip = 1 }' "$root/$page" >"$work/page"
		cat "$work/page" >"$root/$page"
		echo "perf-table.sh: wrote the block into $page" >&2
	done
fi
