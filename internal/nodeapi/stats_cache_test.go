package nodeapi_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"github.com/ratemesh/ratemesh/internal/nodeapi"
)

// gatherCounted is a node whose stats metrics count their gathers.
type gatherCounted struct {
	*ratemesh.Node
	gathers atomic.Int64
}

// StatsMetrics counts each gather of the node's stats metrics.
func (n *gatherCounted) StatsMetrics() prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		n.gathers.Add(1)
		return n.Node.StatsMetrics().Gather()
	})
}

// collectCounted is a collector of series that are not shown in /v1/stats
// (as the RLS per-descriptor metrics are), counting its collections.
type collectCounted struct {
	desc    *prometheus.Desc
	series  int
	collect atomic.Int64
}

func (c *collectCounted) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *collectCounted) Collect(ch chan<- prometheus.Metric) {
	c.collect.Add(1)
	for i := range c.series {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, 1, strconv.Itoa(i))
	}
}

// 8 clients × 25 concurrent GET /v1/stats within one second of the
// service's clock cost one gather of the shown metrics and one fetch of
// the other member's stats, and never read the 10,000 other series of the
// registry; the next second, one more of each. Before, each call gathered
// the whole registry (200 collections of the 10,000 series) and fetched
// the member (200 fetches, each gathering its registry in turn).
func TestStatsCostsOnePerSecond(t *testing.T) {
	lns := make([]net.Listener, 2)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
	}
	nodes := clustertest.Start(t, 2, func(c *ratemesh.Config) {
		c.HTTPAddr = lns[map[string]int{"n0": 0, "n1": 1}[c.Name]].Addr().String()
	})
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var fetches atomic.Int64
	counted := make([]*gatherCounted, 2)
	other := &collectCounted{desc: prometheus.NewDesc("unshown_total", "Series /v1/stats does not show.", []string{"descriptor"}, nil), series: 10_000}
	for i, n := range nodes {
		counted[i] = &gatherCounted{Node: n}
		reg := prometheus.NewRegistry()
		reg.MustRegister(other)
		e := echo.New()
		e.Use(func(next echo.HandlerFunc) echo.HandlerFunc {
			return func(c echo.Context) error {
				if c.QueryParam("scope") == "node" {
					fetches.Add(1)
				}
				return next(c)
			}
		})
		if err := nodeapi.RegisterService(e, counted[i], nodeapi.ServiceConfig{Stats: nodeapi.NewStats(), Registry: reg, Now: clock}); err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: e}
		go srv.Serve(lns[i])
		t.Cleanup(func() { srv.Close() })
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() error {
		resp, err := client.Get("http://" + lns[0].Addr().String() + "/v1/stats")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var st nodeapi.StatsResponse
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return err
		}
		if len(st.Nodes) != 2 || st.Nodes[0].Name != "n0" || st.Nodes[1].Name != "n1" || st.Nodes[1].Error != "" {
			return fmt.Errorf("nodes %+v, want n0 and n1 without error", st.Nodes)
		}
		return nil
	}
	burst := func() {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 25 {
					if err := get(); err != nil {
						t.Errorf("GET /v1/stats: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	for sec := range int64(2) {
		burst()
		g0, g1, f, c := counted[0].gathers.Load(), counted[1].gathers.Load(), fetches.Load(), other.collect.Load()
		if g0 != sec+1 || g1 != sec+1 || f != sec+1 || c != 0 {
			t.Fatalf("second %d, 200 calls: %d and %d gathers, %d fetches, %d collections of the other series; want %d, %d, %d, 0", sec, g0, g1, f, c, sec+1, sec+1, sec+1)
		}
		mu.Lock()
		now = now.Add(time.Second)
		mu.Unlock()
	}
}
