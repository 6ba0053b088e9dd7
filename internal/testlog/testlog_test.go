package testlog_test

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/ratemesh/ratemesh/internal/testlog"
)

func TestBufferConcurrentWrites(t *testing.T) {
	var buf testlog.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				log.Info("line", "writer", i, "n", j)
				_ = buf.String()
			}
		})
	}
	wg.Wait()
	if got := strings.Count(buf.String(), "msg=line"); got != 400 {
		t.Fatalf("%d lines, want 400", got)
	}
	for i := range 8 {
		if got := strings.Count(buf.String(), fmt.Sprintf("writer=%d ", i)); got != 50 {
			t.Fatalf("writer %d: %d lines, want 50", i, got)
		}
	}
}
