package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ratemesh/ratemesh/internal/nodeapi"
)

// cmdMembers prints the members, from the node's /v1/stats (which has the
// ring shares too).
func cmdMembers(cl *cliClient, _ []string) error {
	var st nodeapi.StatsResponse
	if err := cl.call(http.MethodGet, "/v1/stats", url.Values{"scope": {"node"}}, nil, cl.token, &st); err != nil {
		return err
	}
	slices.SortFunc(st.Members, func(a, b nodeapi.MemberStats) int { return strings.Compare(a.Name, b.Name) })
	return cl.show(st.Members, func(w io.Writer) {
		fmt.Fprintln(w, "NAME\tSTATE\tRING\tHTTP\tRPC\t")
		for _, m := range st.Members {
			name := m.Name
			if m.Self {
				name += " *"
			}
			fmt.Fprintf(w, "%s\t%s\t%.1f%%\t%s\t%s\t\n", name, m.State, 100*m.RingShare, m.HTTPAddr, m.RPCAddr)
		}
	})
}

func cmdOwner(cl *cliClient, args []string) error {
	var o nodeapi.OwnerResponse
	if err := cl.call(http.MethodGet, "/v1/cluster/owner", url.Values{"key": {args[0]}}, nil, cl.token, &o); err != nil {
		return err
	}
	return cl.show(o, func(w io.Writer) {
		fmt.Fprintln(w, "KEY\tOWNER\tSTATE\tHTTP\t")
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t\n", o.Key, o.Owner.Name, o.Owner.State, o.Owner.HTTPAddr)
	})
}

func cmdCheck(cl *cliClient, args []string) error {
	req := nodeapi.CheckRequest{Key: args[0], Limits: args[1], Strategy: cl.strategy, Scope: cl.scope}
	if cl.costSet {
		req.Cost = &cl.cost
	}
	var res nodeapi.CheckResponse
	if err := cl.call(http.MethodPost, "/v1/check", nil, req, cl.token, &res); err != nil {
		return err
	}
	return cl.show(res, func(w io.Writer) {
		by := res.Node
		if res.Fallback {
			by += " (fail policy)"
		}
		fmt.Fprintln(w, checkVerdict(res, by, cl.costSet && cl.cost == 0))
		fmt.Fprintln(w, "LIMIT\tREMAINING\tRESET\tRETRY AFTER\t")
		for _, l := range res.Limits {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t\n", l.Limit, l.Remaining, fromNow(l.Reset), seconds(l.RetryAfter))
		}
	})
}

// checkVerdict is the first line of a check's answer, decided by by:
// allowed or denied, or for a peek (cost 0), which counts nothing and is
// always allowed, whether a hit of cost 1 would be allowed now.
func checkVerdict(res nodeapi.CheckResponse, by string, peek bool) string {
	if !peek {
		verdict := "denied"
		if res.Allowed {
			verdict = "allowed"
		}
		return fmt.Sprintf("%s %s by %s", res.Key, verdict, by)
	}
	next := "allowed"
	for _, l := range res.Limits {
		if l.Remaining < 1 {
			next = "denied"
		}
	}
	return fmt.Sprintf("%s peeked at by %s (cost 0, nothing counted): the next hit would be %s", res.Key, by, next)
}

func cmdReset(cl *cliClient, args []string) error {
	if cl.adminToken == "" {
		return fmt.Errorf("--admin-token (or RATEMESH_ADMIN_TOKEN) is required")
	}
	var res nodeapi.ResetResponse
	err := cl.call(http.MethodDelete, "/v1/keys/"+url.PathEscape(args[0]), nil, nil, cl.adminToken, &res)
	if ae := (*apiError)(nil); errors.As(err, &ae) && ae.status == http.StatusNotFound {
		return fmt.Errorf("the admin endpoint of %s is off: the node was started without --admin-token (RATEMESH_ADMIN_TOKEN), which reset needs", cl.addr)
	}
	if err != nil {
		return err
	}
	return cl.show(res, func(w io.Writer) {
		fmt.Fprintf(w, "%s reset on every member (asked %s)\n", res.Reset, res.Node)
	})
}

func cmdLimits(cl *cliClient, _ []string) error {
	q := url.Values{}
	if cl.key != "" {
		q.Set("key", cl.key)
	}
	var res nodeapi.LimitsResponse
	if err := cl.call(http.MethodGet, "/v1/limits", q, nil, cl.token, &res); err != nil {
		return err
	}
	return cl.show(res, func(w io.Writer) {
		if res.Key != "" {
			fmt.Fprintf(w, "%s, owned by %s\n", res.Key, res.Owner)
			fmt.Fprintln(w, "SCOPE\tLIMIT\tSTRATEGY\tREMAINING\tRESET\tROUTES\t")
		} else {
			fmt.Fprintln(w, "SCOPE\tLIMIT\tSTRATEGY\tROUTES\t")
		}
		for _, l := range res.Limits {
			limit := l.Limit
			if l.Shadow {
				limit += " (shadow)"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t", l.Scope, limit, l.Strategy)
			switch {
			case l.Remaining != nil && l.Reset != nil:
				fmt.Fprintf(w, "%d\t%s\t", *l.Remaining, fromNow(*l.Reset))
			case l.Remaining != nil:
				fmt.Fprintf(w, "%d\t-\t", *l.Remaining)
			}
			fmt.Fprintf(w, "%s\t\n", joinRoutes(l.Routes))
		}
	})
}

func cmdTop(cl *cliClient, _ []string) error {
	var st nodeapi.StatsResponse
	// Keys are shown as they are to a caller with a token, the check
	// API's or the admin token; hashed to anyone else.
	if err := cl.call(http.MethodGet, "/v1/stats", nil, nil, cmp.Or(cl.token, cl.adminToken), &st); err != nil {
		return err
	}
	if cl.json || cl.format != nil {
		return cl.show(struct {
			Cluster []nodeapi.TopKey `json:"cluster"`
			Nodes   []nodeTop        `json:"nodes,omitempty"`
		}{st.TopDenied, nodeTops(st.Nodes, cl.perNode)}, nil)
	}
	return cl.show(nil, func(w io.Writer) {
		fmt.Fprintf(w, "top denied keys, cluster-wide (%d nodes)\n", len(st.Nodes))
		topTable(w, st.TopDenied)
		for _, n := range nodeTops(st.Nodes, cl.perNode) {
			fmt.Fprintf(w, "\non %s%s\n", n.Node, n.Error)
			topTable(w, n.Top)
		}
	})
}

// nodeTop is one node's top, for top --node.
type nodeTop struct {
	Node  string           `json:"node"`
	Error string           `json:"error,omitempty"`
	Top   []nodeapi.TopKey `json:"top_denied"`
}

// nodeTops lists each node's top when want is set.
func nodeTops(nodes []nodeapi.NodeStats, want bool) []nodeTop {
	if !want {
		return nil
	}
	out := make([]nodeTop, len(nodes))
	for i, n := range nodes {
		out[i] = nodeTop{Node: n.Name, Top: n.TopDenied}
		if n.Error != "" {
			out[i].Error = " (no answer: " + n.Error + ")"
		}
	}
	return out
}

// topTable prints denied keys.
func topTable(w io.Writer, top []nodeapi.TopKey) {
	fmt.Fprintln(w, "KEY\tDENIED\tLIMIT\tROUTE\tREOPENS\t")
	for _, k := range top {
		count := strconv.FormatInt(k.Count, 10)
		if k.Err > 0 {
			count += "±" + strconv.FormatInt(k.Err, 10)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t\n", k.Key, count, k.Limit, k.Route, fromNow(k.Reset))
	}
}

// fromNow shows an epoch second as a wait: "in 42s", or "now".
func fromNow(epoch int64) string {
	d := time.Until(time.Unix(epoch, 0)).Round(time.Second)
	if d <= 0 {
		return "now"
	}
	return "in " + d.String()
}

// seconds shows a count of seconds, "-" for none.
func seconds(n int64) string {
	if n <= 0 {
		return "-"
	}
	return strconv.FormatInt(n, 10) + "s"
}

// joinRoutes lists routes, at most three of them by name.
func joinRoutes(rs []string) string {
	if len(rs) > 3 {
		return fmt.Sprintf("%s, %s, %s and %d more", rs[0], rs[1], rs[2], len(rs)-3)
	}
	out := ""
	for i, r := range rs {
		if i > 0 {
			out += ", "
		}
		out += r
	}
	return out
}
