package connlimit

import (
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ratemesh/ratemesh/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// accepted runs Accept in a loop and hands each connection over.
func accepted(t *testing.T, l *Listener) <-chan net.Conn {
	t.Helper()
	out := make(chan net.Conn, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			out <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		close(out)
		for c := range out {
			c.Close()
		}
	})
	return out
}

func listen(t *testing.T, cfg Config) (*Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return New(ln, cfg), ln.Addr().String()
}

// Over Max, Accept waits; a closed connection frees its slot.
func TestMaxOpen(t *testing.T) {
	l, addr := listen(t, Config{Max: 3})
	conns := accepted(t, l)
	var got []net.Conn
	for range 5 {
		testkit.DialFrom(t, "127.0.0.1", addr)
	}
	for range 3 {
		got = append(got, <-conns)
	}
	testkit.Eventually(t, 5*time.Second, "3 connections open", func() bool { return l.Open() == 3 })
	select {
	case c := <-conns:
		t.Fatalf("a 4th connection was accepted with Max 3: %v", c.RemoteAddr())
	default:
	}
	got[0].Close()
	got[0].Close() // a second Close frees nothing more
	c := <-conns
	defer c.Close()
	if l.Open() != 3 {
		t.Fatalf("open %d after one closed and one accepted, want 3", l.Open())
	}
}

// One IP gets PerIP connections, another IP its own, an exempt IP any.
func TestPerIP(t *testing.T) {
	exempt := netip.MustParseAddr("127.0.0.3")
	l, addr := listen(t, Config{Max: 100, PerIP: 2, Exempt: func(ip netip.Addr) bool { return ip == exempt }})
	conns := accepted(t, l)
	for range 4 {
		testkit.DialFrom(t, "127.0.0.2", addr)
	}
	testkit.Eventually(t, 5*time.Second, "2 connections of 127.0.0.2 refused", func() bool { return l.Refused() == 2 })
	testkit.DialFrom(t, "127.0.0.1", addr)
	for range 3 {
		testkit.DialFrom(t, "127.0.0.3", addr)
	}
	for range 6 {
		c := <-conns
		defer c.Close()
	}
	if l.Refused() != 2 || l.Open() != 6 {
		t.Fatalf("refused %d open %d, want 2 and 6", l.Refused(), l.Open())
	}
}

// Close ends an Accept that waits for a slot.
func TestCloseWhileFull(t *testing.T) {
	l, addr := listen(t, Config{Max: 1})
	testkit.DialFrom(t, "127.0.0.1", addr)
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errc := make(chan error, 1)
	go func() { _, err := l.Accept(); errc <- err }()
	l.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close = %v, want net.ErrClosed", err)
	}
}
