package grpcguard

import (
	"context"
	"sync"
)

// budget is a weighted semaphore: bytes are taken before a request is
// read and given back once it is answered. Waiters are served in order,
// so a large request is not starved by a stream of small ones.
type budget struct {
	mu      sync.Mutex
	free    int64
	waiters []*waiter
}

type waiter struct {
	n     int64
	ready chan struct{} // closed when the bytes are taken for the waiter
}

func newBudget(n int64) *budget { return &budget{free: n} }

// acquire takes n bytes, waiting until they are free or ctx ends.
func (b *budget) acquire(ctx context.Context, n int64) error {
	b.mu.Lock()
	if len(b.waiters) == 0 && b.free >= n {
		b.free -= n
		b.mu.Unlock()
		return nil
	}
	w := &waiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.ready: // taken meanwhile: give it back
		b.free += n
	default:
		for i, o := range b.waiters {
			if o == w {
				b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
				break
			}
		}
	}
	b.wake() // the next waiters may fit now that this one is gone
	return ctx.Err()
}

// release gives n bytes back.
func (b *budget) release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.free += n
	b.wake()
	b.mu.Unlock()
}

// wake hands free bytes to the waiters at the head of the queue.
func (b *budget) wake() {
	for len(b.waiters) > 0 && b.free >= b.waiters[0].n {
		w := b.waiters[0]
		b.free -= w.n
		close(w.ready)
		b.waiters[0] = nil
		b.waiters = b.waiters[1:]
	}
}

// taken is the bytes held now, out of total.
func (b *budget) taken(total int64) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return total - b.free
}

// waiting is the number of waiters.
func (b *budget) waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.waiters)
}
