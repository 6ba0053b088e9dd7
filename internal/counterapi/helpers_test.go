package counterapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"go.uber.org/goleak"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/counterapi"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, clustertest.LeakOptions()...)
}

// served is a node with the counter API on a real HTTP server.
type served struct {
	node *ratemesh.Node
	url  string
}

// serve mounts the counter API of n on an HTTP server on 127.0.0.1, closed
// when the test ends.
func serve(t *testing.T, n *ratemesh.Node) served {
	t.Helper()
	e := echo.New()
	if err := counterapi.Register(e, n, counterapi.Config{}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return served{node: n, url: srv.URL}
}

// client is the tests' HTTP client; its idle connections are closed when
// the test ends.
func client(t *testing.T) *http.Client {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// call posts body (JSON of any value, or raw bytes) to the operation op of
// s and decodes a 200 into a Response; any other status comes back with
// its body.
func call(c *http.Client, s served, op string, body any) (counterapi.Response, int, string, error) {
	raw, ok := body.([]byte)
	if !ok {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return counterapi.Response{}, 0, "", err
		}
	}
	resp, err := c.Post(s.url+"/v1/counters/"+op, "application/json", bytes.NewReader(raw))
	if err != nil {
		return counterapi.Response{}, 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return counterapi.Response{}, resp.StatusCode, "", err
	}
	var out counterapi.Response
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &out); err != nil {
			return out, resp.StatusCode, string(b), fmt.Errorf("%s: %w", b, err)
		}
	}
	return out, resp.StatusCode, string(b), nil
}

// must is call that fails the test unless the answer is a 200.
func must(t *testing.T, c *http.Client, s served, op string, body any) counterapi.Response {
	t.Helper()
	out, status, text, err := call(c, s, op, body)
	if err != nil || status != http.StatusOK {
		t.Fatalf("%s %v on %s: %d %s %v", op, body, s.node.Name(), status, text, err)
	}
	return out
}

type obj = map[string]any
