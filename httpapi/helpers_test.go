package httpapi_test

import (
	"maps"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh/bucket"
	"github.com/ratemesh/ratemesh/internal/clustertest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, clustertest.LeakOptions()...)
}

// ok is a handler answering 200 "ok".
func ok(c echo.Context) error { return c.String(http.StatusOK, "ok") }

// recorder is an httpapi.Observer that keeps what it is told.
type recorder struct {
	mu      sync.Mutex
	allowed int
	denied  []string       // "key|route|limit" ("" without a status)
	shadow  map[string]int // "route|limit" -> requests
}

func (r *recorder) RecordAllowed(time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.allowed++
}

func (r *recorder) RecordDenied(_ time.Time, key, route string, st *bucket.Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	limit := ""
	if st != nil {
		limit = st.Limit.String()
	}
	r.denied = append(r.denied, key+"|"+route+"|"+limit)
}

func (r *recorder) RecordShadowDenied(_ time.Time, route, limit string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.shadow == nil {
		r.shadow = map[string]int{}
	}
	r.shadow[route+"|"+limit]++
}

// check fails t unless r was told exactly allowed requests allowed,
// denied ("key|route|limit") denied and shadow ("route|limit" -> count)
// shadow-denied.
func (r *recorder) check(t *testing.T, allowed int, denied []string, shadow map[string]int) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.allowed != allowed || !slices.Equal(r.denied, denied) || !maps.Equal(r.shadow, shadow) {
		t.Fatalf("observer told %d allowed, denied %q, shadow %v; want %d, %q, %v", r.allowed, r.denied, r.shadow, allowed, denied, shadow)
	}
}
