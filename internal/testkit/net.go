package testkit

import (
	"net"
	"testing"
	"time"
)

// DialFrom connects to addr from the local IP local (any of 127.0.0.0/8
// works on loopback, so one test can be many clients), and closes the
// connection when the test ends.
func DialFrom(t testing.TB, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
