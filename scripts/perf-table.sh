#!/usr/bin/env bash
# Produces the performance table of README.md and docs/performance.md from
# one run: 3 ratemesh node processes with the presets (one replica a key,
# leases on), the same with --replicas 0, bare Echo and Echo with a Redis
# fixed-window limiter, all through the side-by-side harness that peers.sh
# drives (see its header): GET /products, 10,000 client keys, a limit far
# above the load so that every answer is a 200.
#
#   ./scripts/perf-table.sh HARNESS_DIR           print the block
#   ./scripts/perf-table.sh --write HARNESS_DIR   print it and put it between
#       the lines <!-- perf-table:begin --> and <!-- perf-table:end --> of
#       README.md and docs/performance.md
#
# The block is a line saying when (UTC), on what machine (CPU model, CPUs,
# kernel), at which commit and by which command the figures were made;
# then a row a target: the median req/s and its range over the rounds, the
# median p50 and p99, and the median (and range) of the per-round ratios to
# bare Echo and to Echo + Redis; then, when both ran, ratemesh with
# replicas 1 over replicas 0, round by round. wrk, the servers and the
# nodes share this machine: the ratios are what carries over to another.
#
# Environment: ROUNDS=3, DURATION=10s (each measured run), TARGETS="bare
# redis ratemesh ratemesh-r0" (any of peers.sh's targets; bare and redis
# must be among them), and those of peers.sh and the harness (HEADERS,
# PORT, THREADS, CONNS, WARMUP); every RATEMESH_* variable reaches the
# nodes. The block's command names every one of these that is set.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
TARGETS="${TARGETS:-bare redis ratemesh ratemesh-r0}"
begin='<!-- perf-table:begin -->'
end='<!-- perf-table:end -->'
pages=(README.md docs/performance.md)

write=0
if [[ "${1:-}" == --write ]]; then
	write=1
	shift
fi
harness="${1:-}"
[[ $# == 1 && -x "$harness/run.sh" ]] || die "usage: $0 [--write] HARNESS_DIR (a directory holding an executable run.sh)"
positive ROUNDS
[[ " $TARGETS " == *" bare "* && " $TARGETS " == *" redis "* ]] || die "TARGETS must hold bare and redis, not '$TARGETS'"
if ((write)); then
	for page in "${pages[@]}"; do
		if ! grep -qxF "$begin" "$root/$page" || ! grep -qxF "$end" "$root/$page"; then
			die "$page has no $begin and $end lines to write between"
		fi
	done
fi

work="$(mktemp -d -t ratemesh-perf-table.XXXXXX)"
trap 'rm -rf "$work"' EXIT
runs="$work/runs.tsv"

# command_line prints this run's command as a reader would type it: the
# variables that choose what it measures, then the script and its flag.
command_line() {
	local v words=("ROUNDS=$ROUNDS" "DURATION=$DURATION")
	[[ "$TARGETS" == "bare redis ratemesh ratemesh-r0" ]] || words+=("TARGETS=\"$TARGETS\"")
	for v in HEADERS PORT THREADS CONNS WARMUP $(compgen -e RATEMESH_ || true); do
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
	words+=(HARNESS_DIR)
	echo "${words[*]}"
}

# label TARGET prints what a target of peers.sh is, for the table.
label() {
	local t="$1" base="${1%%-*}" l
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

# column TARGET N prints field N (3 req/s, 4 p50 µs, 5 p99 µs) of TARGET's
# runs, round by round.
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

# block prints the generated lines that go between the markers.
block() {
	local t r0 rounds="$ROUNDS rounds" answers="every answer a 200"
	((ROUNDS > 1)) || rounds="1 round"
	# peers.sh warns of a run with any other answer.
	! grep -q 'warning: not every answer' "$work/peers.log" || answers="NOT every answer a 200 (see the run's warnings)"
	echo "<!-- written by scripts/perf-table.sh from one run: run it again rather than edit these lines -->"
	echo "$(date -u +'%Y-%m-%d %H:%M UTC') · $(machine) · commit \`$(git -C "$root" describe --always --dirty)\` ·"
	echo "\`$(command_line)\`: GET /products, 10,000 client keys, $answers; wrk on the"
	echo "same machine; $rounds of $DURATION, medians and (ranges) over the rounds."
	echo
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

TSV="$runs" ROUNDS="$ROUNDS" DURATION="$DURATION" TARGETS="$TARGETS" "$root/scripts/peers.sh" "$harness" 2>&1 |
	tee "$work/peers.log" >&2
block >"$work/block.md"
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
