package demo_test

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/ratemesh/ratemesh/demo"
	"github.com/ratemesh/ratemesh/internal/clustertest"
)

// endless is a request body of n bytes that counts what was read of it.
type endless struct{ n, read int64 }

func (b *endless) Read(p []byte) (int, error) {
	if b.read >= b.n {
		return 0, http.ErrBodyReadAfterClose
	}
	k := min(int64(len(p)), b.n-b.read)
	for i := range k {
		p[i] = ' '
	}
	b.read += k
	return int(k), nil
}

// A 100 MB login used to be read whole (six in parallel held 1.5 GB); it
// is refused with 413 after at most the cap has been read, allocating
// under a megabyte.
func TestLoginBodyBounded(t *testing.T) {
	rr := servers(t, clustertest.StartNamed(t, 1))
	body := &endless{n: 100 << 20}
	req := httptest.NewRequest(http.MethodPost, "/login", body)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	before := allocated()
	rr.servers[0].ServeHTTP(rec, req)
	if grew := allocated() - before; grew > 1<<20 {
		t.Fatalf("a 100 MB login allocated %d KB, want under 1 MB", grew>>10)
	}
	if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "body larger than 4096 bytes") {
		t.Fatalf("100 MB login: %d %s, want 413", rec.Code, rec.Body)
	}
	if body.read > demo.MaxLoginBody+64<<10 {
		t.Fatalf("read %d bytes of a 100 MB login, want about %d", body.read, demo.MaxLoginBody)
	}
}

// allocated is the bytes allocated so far, by every goroutine: the
// node's own background work allocates far less than a megabyte meanwhile.
func allocated() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}
