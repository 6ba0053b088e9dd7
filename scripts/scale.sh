#!/usr/bin/env bash
# Measures how a cluster grows with its size: TestScale (scale_test.go)
# runs N nodes in one process for each N and prints a table of the time
# to start, for a node to join and for all to agree after a leave, the
# keys handed off and the time it takes while the cluster holds KEYS keys,
# heap and goroutines per node, and checks per second through every node.
#
#   ./scripts/scale.sh [SIZES]
#
# SIZES is a comma-separated list of node counts, default 3,10,20,50 (the
# 50-node run takes a few minutes of both cores: run one at a time).
# Environment: KEYS=1000000, REPLICAS (the preset's when unset; 0 turns
# replication off), PROFILE=FILE to write a CPU profile of the run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

sizes="${1:-3,10,20,50}"
[[ "$sizes" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "sizes must be node counts separated by commas, got '$sizes'"
KEYS="${KEYS:-1000000}"
positive KEYS
need go

args=(test -count=1 -run '^TestScale$' -v -timeout 60m)
if [[ -n "${PROFILE:-}" ]]; then
	testbin="${TMPDIR:-/tmp}/ratemesh-scale.test"
	args+=(-cpuprofile "$PROFILE" -o "$testbin")
	trap 'echo "profile: go tool pprof -top $testbin $PROFILE"' EXIT
fi
cd "$root"
RATEMESH_SCALE="$sizes" RATEMESH_SCALE_KEYS="$KEYS" RATEMESH_SCALE_REPLICAS="${REPLICAS:-}" \
	go "${args[@]}" . | grep -E '^\s+(scale_test\.go:|\|)|^(--- |ok|FAIL)'
