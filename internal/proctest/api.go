//go:build linux

package proctest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/nodeapi"
	"github.com/ratemesh/ratemesh/internal/testkit"
)

// WaitMembers polls until each of nodes reports exactly nodes, all alive,
// failing the test at since+within. It returns the time since since.
func (c *Cluster) WaitMembers(t testing.TB, within time.Duration, since time.Time, nodes []*Node) time.Duration {
	t.Helper()
	var want []string
	for _, p := range nodes {
		want = append(want, p.Name)
	}
	slices.Sort(want)
	var why string
	testkit.Eventually(t, within-time.Since(since), fmt.Sprintf("members are not %v", want), func() bool {
		var seen []string
		ok := true
		for _, p := range nodes {
			got, err := c.Members(p)
			seen = append(seen, fmt.Sprintf("%s sees %v (err %v)", p.Name, got, err))
			ok = ok && err == nil && slices.Equal(got, want)
		}
		why = "\n" + strings.Join(seen, "\n")
		return ok
	}, &why)
	return time.Since(since)
}

// Members lists the names p reports, sorted, a member in any state but
// alive as name(state).
func (c *Cluster) Members(p *Node) ([]string, error) {
	var body struct {
		Members []struct{ Name, State string }
	}
	if err := c.GetJSON(p, "/v1/cluster/members", &body); err != nil {
		return nil, err
	}
	var names []string
	for _, m := range body.Members {
		if m.State != "alive" {
			m.Name += "(" + m.State + ")"
		}
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return names, nil
}

// KeyOwnedBy returns a /v1/check key (prefix, then a number) whose
// routing key the cluster's first node places on owner.
func (c *Cluster) KeyOwnedBy(t testing.TB, prefix string, owner *Node) string {
	t.Helper()
	for i := range 1000 {
		k := fmt.Sprintf("%s-%s-%d", prefix, c.RunID, i)
		o, err := c.Owner(c.Nodes[0], nodeapi.CheckKeyPrefix+k)
		if err != nil {
			t.Fatal(err)
		}
		if o == owner.Name {
			return k
		}
	}
	t.Fatalf("no key owned by %s in 1000", owner.Name)
	return ""
}

// Owner is the member p places routing key key on.
func (c *Cluster) Owner(p *Node, key string) (string, error) {
	var body struct{ Owner struct{ Name string } }
	err := c.GetJSON(p, "/v1/cluster/owner?key="+key, &body)
	return body.Owner.Name, err
}

// GetJSON reads path of p into v; an answer but 200 is an error.
func (c *Cluster) GetJSON(p *Node, path string, v any) error {
	r, err := c.Do(p, http.MethodGet, path, nil)
	if err == nil && r.Status != http.StatusOK {
		err = fmt.Errorf("status %d: %s", r.Status, r.Body)
	}
	if err == nil {
		err = json.Unmarshal(r.Body, v)
	}
	return err
}

// Reply is an HTTP answer, read in full.
type Reply struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends one request to p, with c's token if it has one; header holds
// name, value pairs (an Authorization among them replaces the token).
func (c *Cluster) Do(p *Node, method, path string, body io.Reader, header ...string) (Reply, error) {
	req, err := http.NewRequest(method, "http://"+net.JoinHostPort(p.Host(), strconv.Itoa(p.HTTPPort))+path, body)
	if err != nil {
		return Reply{}, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return Reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return Reply{Status: resp.StatusCode, Header: resp.Header, Body: b}, err
}

// Answer is what the tests read of a /v1/check answer.
type Answer struct {
	Allowed bool
	Limits  []struct {
		Remaining  int64
		RetryAfter int64 `json:"retry_after"`
	}
	Node     string
	Fallback bool
}

// Check sends one /v1/check of key against limits (one limit) to p; it
// fails the test unless the owner (no fallback) answers 200.
func (c *Cluster) Check(t testing.TB, p *Node, key, limits string, cost int) Answer {
	t.Helper()
	a := c.CheckAny(t, p, key, limits, cost)
	if a.Fallback {
		t.Fatalf("/v1/check on %s: decided by the fail policy: %+v", p.Name, a)
	}
	return a
}

// Admitted sends n checks of key at cost 1 round-robin over the nodes,
// from node first on, each decided by its owner (Check), and returns how
// many were admitted.
func (c *Cluster) Admitted(t testing.TB, key, limits string, n, first int) int {
	t.Helper()
	allowed := 0
	for i := range n {
		if c.Check(t, c.Nodes[(first+i)%len(c.Nodes)], key, limits, 1).Allowed {
			allowed++
		}
	}
	return allowed
}

// CheckAny is Check that accepts a decision of the fail policy.
func (c *Cluster) CheckAny(t testing.TB, p *Node, key, limits string, cost int) Answer {
	t.Helper()
	body := fmt.Sprintf(`{"key":%q,"limits":%q,"cost":%d}`, key, limits, cost)
	r, err := c.Do(p, http.MethodPost, "/v1/check", strings.NewReader(body), "Content-Type", "application/json")
	var a Answer
	if err != nil || r.Status != http.StatusOK || json.Unmarshal(r.Body, &a) != nil || len(a.Limits) != 1 {
		t.Fatalf("/v1/check on %s: %v %d %s", p.Name, err, r.Status, r.Body)
	}
	return a
}

// FreePorts is freePorts, never returning a port it gave to a node of c
// before: a node that is stopped and starts again on its own ports must
// find them free of its neighbours.
func (c *Cluster) FreePorts() (httpPort, gossipPort, rpcPort int, err error) {
	for range 20 {
		if httpPort, gossipPort, rpcPort, err = freePorts(); err != nil {
			return 0, 0, 0, err
		}
		if !c.portsGiven[httpPort] && !c.portsGiven[gossipPort] && !c.portsGiven[rpcPort] {
			c.portsGiven[httpPort], c.portsGiven[gossipPort], c.portsGiven[rpcPort] = true, true, true
			return httpPort, gossipPort, rpcPort, nil
		}
	}
	return 0, 0, 0, errors.New("no ports free that no node of the test has had")
}

// freePorts picks an HTTP, a gossip and an RPC port that are free now, the
// gossip one for both TCP and UDP. All are held while choosing, so they
// differ; another process may still take one before the node binds it,
// which Start retries.
func freePorts() (httpPort, gossipPort, rpcPort int, err error) {
	var held []io.Closer
	defer func() {
		for _, h := range held {
			h.Close()
		}
	}()
	tcp := func() (int, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		held = append(held, ln)
		return ln.Addr().(*net.TCPAddr).Port, nil
	}
	if httpPort, err = tcp(); err != nil {
		return
	}
	if rpcPort, err = tcp(); err != nil {
		return
	}
	for range 20 {
		if gossipPort, err = tcp(); err != nil {
			return
		}
		if udp, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(gossipPort))); err == nil {
			held = append(held, udp)
			return httpPort, gossipPort, rpcPort, nil
		}
	}
	return 0, 0, 0, errors.New("no port free for both TCP and UDP")
}
