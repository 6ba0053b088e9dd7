package testkit

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Do serves one bodiless request through h as if from peer (an
// "address:port"), with header given as name, value pairs.
func Do(h http.Handler, method, target, peer string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	req.RemoteAddr = peer
	return serve(h, req, header)
}

// Send serves one request with a JSON body through h, with header given
// as name, value pairs.
func Send(h http.Handler, method, target, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return serve(h, req, header)
}

// serve sets header on req and serves it through h.
func serve(h http.Handler, req *http.Request, header []string) *httptest.ResponseRecorder {
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// EqualJSON reports whether a and b encode to the same JSON.
func EqualJSON(a, b any) bool {
	x, errX := json.Marshal(a)
	y, errY := json.Marshal(b)
	return errX == nil && errY == nil && string(x) == string(y)
}

// discard is a ResponseWriter that keeps nothing but its header map.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// BenchServe benchmarks GET /products served by e, in parallel, from
// clients client addresses taken in turn.
func BenchServe(b *testing.B, e http.Handler, clients int) {
	reqs := make([]*http.Request, clients)
	for i := range reqs {
		reqs[i] = httptest.NewRequest(http.MethodGet, "/products", nil)
		reqs[i].RemoteAddr = fmt.Sprintf("10.%d.%d.%d:1234", i>>16&255, i>>8&255, i&255)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discard{h: make(http.Header)}
		i := 0
		for pb.Next() {
			clear(w.h)
			e.ServeHTTP(w, reqs[i%len(reqs)])
			i++
		}
	})
}
