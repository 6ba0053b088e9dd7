package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// memberlist's transport goroutines end shortly after Shutdown.
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*NetTransport).tcpListen"),
		goleak.IgnoreTopFunction("github.com/hashicorp/memberlist.(*NetTransport).udpListen"),
	)
}

// startNode starts one real node with the local preset, closed at cleanup.
func startNode(t testing.TB, name string) *ratemesh.Node {
	t.Helper()
	cfg := ratemesh.LocalConfig()
	cfg.Name = name
	n, err := ratemesh.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n.Close(ctx)
	})
	return n
}

// startCluster starts size real nodes joined together on 127.0.0.1 and
// waits until every ring holds all of them.
func startCluster(t testing.TB, size int) []*ratemesh.Node {
	t.Helper()
	nodes := make([]*ratemesh.Node, size)
	for i := range nodes {
		nodes[i] = startNode(t, fmt.Sprintf("%s-n%d", strings.ReplaceAll(t.Name(), "/", "-"), i))
		if i > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := nodes[i].Join(ctx, nodes[0].GossipAddr())
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, 15*time.Second, "cluster did not converge", func() bool {
		for _, n := range nodes {
			if len(n.Members()) != size {
				return false
			}
			for _, m := range n.Members() {
				if m.State != "alive" {
					return false
				}
			}
		}
		for k := 0; k < 100; k++ {
			key := fmt.Sprintf("k%d", k)
			first, ok := nodes[0].Owner(key)
			if !ok {
				return false
			}
			for _, n := range nodes[1:] {
				if o, ok := n.Owner(key); !ok || o.Name != first.Name {
					return false
				}
			}
		}
		return true
	})
	return nodes
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// do serves one request through e from peer.
func do(e http.Handler, method, target, peer string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	req.RemoteAddr = peer
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

// ok is a handler answering 200 "ok".
func ok(c echo.Context) error { return c.String(http.StatusOK, "ok") }
