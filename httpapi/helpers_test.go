package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, clustertest.LeakOptions()...)
}

// startNode starts one real node with the test preset, closed at cleanup.
func startNode(t testing.TB, name string) *ratemesh.Node {
	t.Helper()
	return clustertest.StartNode(t, name, nil)
}

// startCluster starts size real nodes joined together on 127.0.0.1 and
// waits until every ring holds all of them. They are named after the test
// and use the test preset (a forward timeout that load cannot trip).
func startCluster(t testing.TB, size int) []*ratemesh.Node {
	t.Helper()
	prefix := strings.ReplaceAll(t.Name(), "/", "-")
	return clustertest.Start(t, size, func(c *ratemesh.Config) {
		c.Name = prefix + "-" + c.Name // <test>-n0, <test>-n1, …
	})
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
