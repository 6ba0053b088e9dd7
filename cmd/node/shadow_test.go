package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/ratemesh/ratemesh/demo"
)

// The policy file sets shadow (globally and per route), count_when and
// count_in_flight, and names the line of a bad value.
func TestLoadPolicyShadowAndCountWhen(t *testing.T) {
	file := writePolicy(t, `shadow: true
routes:
  - method: POST
    path: /login
    limits: "5 per minute"
    count_when: [401, 403]
    count_in_flight: 2
  - method: GET
    path: /products
    shadow: true
`)
	p, err := loadPolicy(file, demo.Policy())
	if err != nil {
		t.Fatal(err)
	}
	login := route(t, p, "POST", "/login")
	if !p.Shadow || !slices.Equal(login.CountStatuses, []int{401, 403}) || login.CountInFlight != 2 || login.Shadow {
		t.Fatalf("policy shadow %v, /login %+v", p.Shadow, login)
	}
	if !route(t, p, "GET", "/products").Shadow {
		t.Fatal("GET /products is not shadow")
	}
	for _, tc := range []struct{ content, want string }{
		{"shadow: maybe\n", ":1: shadow: want true or false"},
		{"routes:\n  - path: /login\n    count_when: [4010]\n", `:2: route "POST /login": count_when: status 4010 is not 100 to 599`},
		{"routes:\n  - path: /login\n    count_in_flight: -1\n", `:2: route "POST /login": count_in_flight -1 is negative`},
	} {
		_, err := loadPolicy(writePolicy(t, tc.content), demo.Policy())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%q: error %v, want it to contain %s", tc.content, err, tc.want)
		}
	}
}
