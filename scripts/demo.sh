#!/usr/bin/env bash
# A tour of the products demo on a running ratemesh cluster:
#
#   ./scripts/cluster.sh up     # a 3-node cluster with the demo
#   ./scripts/demo.sh
#
# Requests go to different nodes on purpose: every limit holds across the
# cluster, because each client key is counted on one owner node whichever
# node the client talks to. Each answer is shown as its status line and its
# rate-limit headers.
#
# HTTP_BASE (default 8081) is the HTTP port of the node asked for the member
# list; the tour finds the other nodes through it. Each run uses fresh API
# keys, so running it again within the minute shows the same behaviour.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HTTP_BASE="${HTTP_BASE:-8081}"
positive HTTP_BASE
entry="127.0.0.1:$HTTP_BASE"
run="demo-$(date +%s)-$RANDOM"

need go curl
need_bin
# The admin token of the cluster ./scripts/cluster.sh runs, if it runs one
# and no token is given: top shows the keys to it as they are.
admin_token_file="$root/run/cluster/admin-token"
if [[ -z "${RATEMESH_ADMIN_TOKEN:-}" && -f "$admin_token_file" && -f "$root/run/cluster/size" ]]; then
	RATEMESH_ADMIN_TOKEN="$(cat "$admin_token_file")"
	export RATEMESH_ADMIN_TOKEN
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The members that answer, sorted by name: names[i] serves HTTP at
# urls[i]. Gossip takes a moment to notice a crashed node, so each is asked
# for its health first.
members="$(cli "$entry" members --timeout 3s --format '{{range .}}{{if eq .state "alive"}}{{.name}} {{.http_addr}}{{"\n"}}{{end}}{{end}}')" ||
	die "no ratemesh node answers at $entry; start a cluster with ./scripts/cluster.sh up (or set HTTP_BASE)"
names=()
urls=()
while read -r name addr; do
	curl -fsS -o /dev/null --max-time 1 "http://$addr/healthz" 2>/dev/null || continue
	names+=("$name")
	urls+=("http://$addr")
done <<<"$members"
((${#names[@]} >= 2)) || die "the tour needs a cluster of at least 2 nodes; ${#names[@]} answer through $entry"

# ask I METHOD PATH [curl args...] sends one request to node I (taken modulo
# the cluster size). It prints the node, the request and the status line,
# under them the rate-limit headers (and the body of an error), and leaves
# the status code in $code and the body in $body. With quiet=1 it prints
# nothing.
quiet=0
ask() {
	local i=$(($1 % ${#urls[@]})) method="$2" path="$3" status name value limits=""
	shift 3
	body="$(curl -sS --max-time 5 -X "$method" -D "$tmp/headers" "$@" "${urls[i]}$path")" ||
		die "$method $path on ${names[i]} failed"
	status="$(head -n 1 "$tmp/headers" | tr -d '\r')"
	code="$(cut -d ' ' -f 2 <<<"$status")"
	((quiet)) && return
	# In a fixed order, so that answers line up one under another.
	for name in X-Ratelimit-Limit X-Ratelimit-Remaining X-Ratelimit-Reset Retry-After Ratelimit Ratelimit-Policy; do
		value="$(grep -i "^$name:" "$tmp/headers" | head -n 1 | tr -d '\r' || true)"
		[[ -n "$value" ]] && limits="$limits  $value"
	done
	printf '  %-6s %-4s %-13s %s\n' "${names[i]}" "$method" "$path" "$status"
	printf '         %s\n' "${limits:-  (no rate-limit headers)}"
	[[ "$code" == 2* ]] || printf '           %s\n' "$body"
}

# burst FIRST N METHOD PATHS [curl args...] sends N requests to the nodes
# in turn, starting at node FIRST, and stops early at the first 429. PATHS is
# one path or several, comma-separated, asked in turn. It prints the first
# two and the last two answers and sums up the others; $code is the last
# status.
burst() {
	local first="$1" n="$2" method="$3" paths j skipped=0 codes=""
	IFS=, read -ra paths <<<"$4"
	shift 4
	for ((j = 0; j < n; j++)); do
		quiet=$((j >= 2 && j < n - 2))
		if ((!quiet && skipped > 0)); then
			printf '  ... %d more over the nodes, answered:%s\n' "$skipped" \
				"$(tr ' ' '\n' <<<"$codes" | grep . | sort | uniq -c | awk '{ printf " %s x %s", $1, $2 }')"
			skipped=0
		fi
		ask $((first + j)) "$method" "${paths[j % ${#paths[@]}]}" "$@"
		if ((quiet)); then
			skipped=$((skipped + 1))
			codes="$codes $code"
		fi
		if [[ "$code" == 429 ]]; then
			break
		fi
	done
	quiet=0
}

section() { printf '\n== %s\n%s\n\n' "$1" "$2"; }

# login USER PASSWORD logs a demo user in on the first node and leaves the
# token in $token. The run's API key makes the run its own client for the
# login limit, so that reruns never use it up.
login() {
	ask 0 POST /login -H "X-API-KEY: $run-login" -H 'Content-Type: application/json' \
		-d "{\"username\":\"$1\",\"password\":\"$2\"}"
	[[ "$code" == 200 ]] || die "login of $1 failed: $body"
	token="$("$bin" json - --format '{{.token}}' <<<"$body")"
	printf '           {"token":"%s...", "tier":"%s"}\n' "${token:0:20}" "$("$bin" json - --format '{{.tier}}' <<<"$body")"
}

printf 'ratemesh demo tour: %d nodes (%s); API keys of this run start with %s\n' \
	"${#names[@]}" "${names[*]}" "$run"

key="$run-products"
section "GET /products: 5 per minute per API key, counted across the cluster" \
	"Five requests with X-API-KEY $key to ${names[0]}, then the sixth to ${names[1]}:"
for ((j = 0; j < 5; j++)); do ask 0 GET /products -H "X-API-KEY: $key"; done
ask 1 GET /products -H "X-API-KEY: $key"
[[ "$code" == 429 ]] || die "the 6th /products request was not denied (status $code)"
echo "  -> ${names[1]} denies the 6th: all six were counted by the key's one owner node, whichever node they came to."

key="$run-rb"
section "GET /rb-products: 10 per minute, 100 for the admin key" \
	"An ordinary key, over the nodes in turn, until denied:"
burst 0 11 GET /rb-products -H "X-API-KEY: $key"
[[ "$code" == 429 ]] || die "the 11th /rb-products request was not denied (status $code)"
echo
echo "The admin key admin123 (its 100 per minute are shared by every run of this tour):"
burst 0 3 GET /rb-products -H "X-API-KEY: admin123"

key="$run-shared"
section "GET /popular and GET /deals: one shared quota of 20 per minute" \
	"Alternating the two routes with one key; the 21st request is denied whichever route it asks for:"
burst 0 21 GET /popular,/deals -H "X-API-KEY: $key"
[[ "$code" == 429 ]] || die "the 21st shared request was not denied (status $code)"

section "GET /health: exempt, never limited" "Twelve requests with one key:"
burst 0 12 GET /health -H "X-API-KEY: $run-health"

section "POST /login, then GET /orders limited per JWT subject and tier" \
	"The token's subject is the key and its tier the limit: free 10, paid 100 per minute, admin unlimited."
echo "Without a token:"
ask 1 GET /orders
echo
echo "Log in as free (POST /login counts failed logins only, 5 per minute per client):"
login free free-demo
echo
echo "The free user's token, over the nodes in turn, until denied:"
burst 1 11 GET /orders -H "Authorization: Bearer $token"
echo "  (the free user is one subject for every run: within a minute of an earlier"
echo "   run its quota may be spent already)"
echo
echo "Log in as paid; its limit is 100:"
login paid paid-demo
echo
burst 1 2 GET /orders -H "Authorization: Bearer $token"
echo
echo "Log in as admin; the admin tier is unlimited, so /orders sends no rate-limit headers:"
login admin admin-demo
echo
burst 1 2 GET /orders -H "Authorization: Bearer $token"
key="$run-brute"
section "POST /login: only failed logins count, 5 per minute per client" \
	"Wrong passwords with X-API-KEY $key, over the nodes in turn; the 6th failure is denied, the right password too:"
burst 0 7 POST /login -H "X-API-KEY: $key" -H 'Content-Type: application/json' -d '{"username":"free","password":"guess"}'
[[ "$code" == 429 ]] || die "the 6th failed login was not denied (status $code)"
ask 1 POST /login -H "X-API-KEY: $key" -H 'Content-Type: application/json' -d '{"username":"free","password":"free-demo"}'

section "What the operators see: ratemesh-node limits and top" \
	"The state of the first key on its owner (ratemesh-node limits --key apikey:$run-products):"
cli "$entry" limits --key "apikey:$run-products" | grep -E '^(apikey|SCOPE|GET /products )'
echo
if [[ -n "${RATEMESH_ADMIN_TOKEN:-}" ]]; then
	echo "The keys denied most, cluster-wide, this tour's (ratemesh-node top):"
	cli "$entry" top | grep -E "^(top|KEY|apikey:$run)"
else
	echo "The keys denied most, cluster-wide (ratemesh-node top; without the admin token"
	echo "or an API token the keys are hashed):"
	cli "$entry" top
fi
printf '\nDone. The same limits hold whichever node answers; see ./scripts/cluster.sh status\nand the dashboard at http://%s/ui.\n' "$entry"
