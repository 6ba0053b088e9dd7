package rpc

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/internal/testkit"
)

// Each bad connection is closed with a log line saying why, and the server
// goes on serving a good client.
func TestBadInput(t *testing.T) {
	frame := func(id uint64, kind byte, payload []byte) []byte {
		b, at := appendHead(nil, id, kind)
		b = append(b, payload...)
		finishFrame(b, at)
		return b
	}
	cases := []struct {
		name      string
		handshake bool // speak the handshake first
		send      []byte
		log       string
	}{
		{"random bytes", false, randomBytes(4096), "bad magic"},
		{"short garbage", false, []byte("GET / HTTP/1.1\r\n\r\n"), "reading hello"},
		{"2 GiB length prefix", true, []byte{0x80, 0, 0, 0, 1, 2, 3}, "exceeds the cap"},
		{"4 GiB-1 length prefix", true, []byte{0xff, 0xff, 0xff, 0xff}, "exceeds the cap"},
		{"truncated frame", true, frame(1, byte(opPing), make([]byte, 100))[:50], "truncated frame (46 of 109 bytes)"},
		{"truncated header", true, []byte{0, 0}, "truncated frame header"},
		{"frame shorter than its header", true, []byte{0, 0, 0, 3, 1, 2, 3}, "shorter than its header"},
		{"unknown op", true, frame(7, 99, nil), "unknown op 99"},
		{"malformed check", true, frame(7, byte(opCheck), []byte{0x93, 0xc1}), "malformed"},
		{"check with forged list length", true, frame(7, byte(opCheck), []byte{0x96, 0xa1, 'k', 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff}), "elements in 0 bytes"},
		{"check of protocol version 6", true, frame(7, byte(opCheck), []byte{0x94, 0xa1, 'k', 0x01, 0x90, 0x00}), "malformed check request"},
		{"check with a negative wait", true, frame(7, byte(opCheck), []byte{0x96, 0xa1, 'k', 0x01, 0x90, 0x00, 0x00, 0xff}), "malformed wait"},
		{"merge with forged list length", true, frame(7, byte(opMerge), []byte{0x94, byte(opMerge), 0xa1, 'n', 0x96, 0x00, 0x90, 0xc2, 0xc2, 0x00, 0x00, 0xdd, 0x7f, 0xff, 0xff, 0xff}), "elements in 0 bytes"},
		{"replica with forged nested length", true, frame(7, byte(opReplica), append([]byte{0x94, byte(opReplica), 0xa1, 'n', 0x00, 0x91, 0x92, 0xa1, 'k', 0x91, 0x81, 0xa4, 'H', 'i', 't', 's', 0xdd, 0x0f, 0xff, 0xff, 0xff}, make([]byte, 16)...)), "malformed counter state"},
		{"refund payload under the replica op", true, frame(7, byte(opReplica), []byte{0x94, byte(opRefund), 0xa1, 'n', 0x00, 0x90}), "malformed replica request: it is a refund payload"},
		{"replica payload under the merge op", true, frame(7, byte(opMerge), []byte{0x94, byte(opReplica), 0xa1, 'n', 0x00, 0x90}), "malformed merge request: it is a replica payload"},
		{"merge of protocol version 2", true, frame(7, byte(opMerge), []byte{0x97, 0xa1, 'n', 0xc2, 0xc3, 0xc2, 0x00, 0x00, 0x90}), "malformed merge request"},
		{"merge of protocol version 3", true, frame(7, byte(opMerge), []byte{0x94, byte(opMerge), 0xa1, 'n', 0xc3, 0x90}), "malformed bases"},
		{"merge with a base and no entry", true, frame(7, byte(opMerge), []byte{0x94, byte(opMerge), 0xa1, 'n', 0x96, 0x01, 0x91, 0x92, 0xa1, 'k', 0x90, 0xc2, 0xc2, 0x00, 0x00, 0x90}), "1 bases for 0 entries"},
		{"merge with a base of another key", true, frame(7, byte(opMerge), []byte{0x94, byte(opMerge), 0xa1, 'n', 0x96, 0x01, 0x91, 0x92, 0xa1, 'k', 0x90, 0xc2, 0xc2, 0x00, 0x00, 0x91, 0x92, 0xa1, 'j', 0x90}), "base 0 is of key"},
		{"merge of protocol version 4", true, frame(7, byte(opMerge), []byte{0x94, byte(opMerge), 0xa1, 'n', 0x92, 0x00, 0x90, 0x90}), "malformed bases"},
		{"fill-in with bases", true, frame(7, byte(opMerge), []byte{0x94, byte(opMerge), 0xa1, 'n', 0x96, 0x01, 0x91, 0x92, 0xa1, 'k', 0x90, 0xc3, 0xc2, 0x00, 0x00, 0x91, 0x92, 0xa1, 'k', 0x90}), "a fill-in with 1 bases"},
		{"fill-in flag not a bool", true, frame(7, byte(opMerge), []byte{0x94, byte(opMerge), 0xa1, 'n', 0x96, 0x00, 0x90, 0x01, 0xc2, 0x00, 0x00, 0x90}), "malformed fill-in"},
		{"merge of protocol version 5", true, frame(7, byte(opMerge), []byte{0x94, byte(opMerge), 0xa1, 'n', 0x93, 0x00, 0x90, 0xc2, 0x90}), "malformed bases"},
		{"receiver's incarnation not a number", true, frame(7, byte(opMerge), []byte{0x94, byte(opMerge), 0xa1, 'n', 0x96, 0x00, 0x90, 0xc2, 0xc2, 0xa1, 'x', 0x00, 0x90}), "malformed receiver's incarnation"},
		{"sender's incarnation not a number", true, frame(7, byte(opMerge), []byte{0x94, byte(opMerge), 0xa1, 'n', 0x96, 0x00, 0x90, 0xc2, 0xc2, 0x00, 0xc3, 0x90}), "malformed sender's incarnation"},
		{"merge of protocol version 7", true, frame(7, byte(opMerge), []byte{0x94, byte(opMerge), 0xa1, 'n', 0x95, 0x00, 0x90, 0xc2, 0x00, 0x00, 0x90}), "malformed bases"},
		{"beside flag not a bool", true, frame(7, byte(opMerge), []byte{0x94, byte(opMerge), 0xa1, 'n', 0x96, 0x00, 0x90, 0xc2, 0x01, 0x00, 0x00, 0x90}), "malformed beside"},
		{"counts beside the owner with bases", true, frame(7, byte(opMerge), []byte{0x94, byte(opMerge), 0xa1, 'n', 0x96, 0x01, 0x91, 0x92, 0xa1, 'k', 0x90, 0xc2, 0xc3, 0x00, 0x00, 0x91, 0x92, 0xa1, 'k', 0x90}), "beside the owner with 1 bases"},
		{"trailing bytes", true, frame(7, byte(opReset), []byte{0xa1, 'k', 0x00}), "trailing bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, &testHandler{}, ServerConfig{HandshakeTimeout: 5 * time.Second})
			var nc net.Conn
			if tc.handshake {
				nc = rawConn(t, ts.addr, nil)
			} else {
				var err error
				if nc, err = net.Dial("tcp", ts.addr); err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
			}
			nc.Write(tc.send)
			nc.(*net.TCPConn).CloseWrite() // the truncated cases end here
			expectClosed(t, nc)
			ts.log.waitLog(t, "connection closed", tc.log)

			c, _ := newTestClient(t, ts.addr, ClientConfig{})
			var resp CheckResponse
			if err := c.Check(context.Background(), sampleRequest("good", 1), &resp); err != nil || resp.Node != "good" {
				t.Fatalf("good client after bad input: %v", err)
			}
		})
	}
}

// A peer that announces a frame and stalls is cut off after IOTimeout; one
// that stalls in the handshake after HandshakeTimeout.
func TestStalledPeer(t *testing.T) {
	ts := startServer(t, &testHandler{}, ServerConfig{HandshakeTimeout: 50 * time.Millisecond, IOTimeout: 50 * time.Millisecond})
	nc := rawConn(t, ts.addr, nil)
	nc.Write([]byte{0, 0, 0, 100, 1, 2})
	expectClosed(t, nc)
	ts.log.waitLog(t, "i/o timeout")

	nc2, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	expectClosed(t, nc2)
	ts.log.waitLog(t, "handshake: reading hello")
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	copy(b, "XXXX") // never the magic by chance
	return b
}

func TestSecret(t *testing.T) {
	secretA, secretB := []byte("secret A"), []byte("secret B")
	cases := []struct {
		name           string
		server, client []byte
		serverLog      string
	}{
		{"client has the wrong secret", secretA, secretB, "client refused this node's secret"},
		{"client has no secret", secretA, nil, "client has no secret"},
		{"server has no secret", nil, secretA, "client has a secret, this node none"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, &testHandler{}, ServerConfig{Secret: tc.server})
			c, _ := newTestClient(t, ts.addr, ClientConfig{Secret: tc.client})
			err := c.Ping(context.Background())
			if !errors.Is(err, ErrAuth) || !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Ping = %v, want ErrAuth", err)
			}
			ts.log.waitLog(t, "handshake", tc.serverLog)

			good, _ := newTestClient(t, ts.addr, ClientConfig{Secret: tc.server})
			if err := good.Ping(context.Background()); err != nil {
				t.Fatalf("client with the right secret: %v", err)
			}
		})
	}
}

// The server refuses a client whose proof is wrong, including one that
// reflects the server's own MAC back, and tells it so.
func TestServerRefusesBadProof(t *testing.T) {
	secret := []byte("s3cret")
	ts := startServer(t, &testHandler{}, ServerConfig{Secret: secret})
	for _, reflect := range []bool{false, true} {
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		hello := make([]byte, helloSize)
		copy(hello, magic)
		hello[4], hello[5] = protoVersion, modeHMAC
		nc.Write(hello)
		reply := make([]byte, replySize)
		br := bufio.NewReader(nc)
		if _, err := io.ReadFull(br, reply); err != nil {
			t.Fatal(err)
		}
		proof := make([]byte, macSize) // zeros: a client without the secret
		if reflect {
			copy(proof, reply[7+nonceSize:])
		}
		nc.Write(proof)
		if v, err := br.ReadByte(); err != nil || v != verdictBad {
			t.Fatalf("verdict %d, %v; want %d", v, err, verdictBad)
		}
		expectClosed(t, nc)
	}
	ts.log.waitLog(t, "wrong secret: refused")
}

// A hello of an older or a newer version is answered with this server's
// version and a refusal, and logged with both versions.
func TestVersionMismatch(t *testing.T) {
	ts := startServer(t, &testHandler{}, ServerConfig{})
	for _, v := range []byte{protoVersion - 1, protoVersion + 1} {
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		hello := make([]byte, helloSize)
		copy(hello, magic)
		hello[4] = v
		nc.Write(hello)
		reply := make([]byte, replySize)
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(nc, reply); err != nil || reply[6] != hsBadVersion || reply[4] != protoVersion {
			t.Fatalf("reply version %d status %d, %v; want %d, %d", reply[4], reply[6], err, protoVersion, hsBadVersion)
		}
		expectClosed(t, nc)
		ts.log.waitLog(t, fmt.Sprintf("client speaks protocol version %d, this node version %d: refused", v, protoVersion))
	}

	// A client that reaches something else gets ErrVersion.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		nc.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n" + string(make([]byte, replySize))))
		io.Copy(io.Discard, nc)
	}()
	c, _ := newTestClient(t, ln.Addr().String(), ClientConfig{})
	if err := c.Ping(context.Background()); !errors.Is(err, ErrVersion) {
		t.Fatalf("Ping to a non-ratemesh server = %v, want ErrVersion", err)
	}
}

// A node of the previous protocol version and one of this version refuse
// each other, whichever dials, with or without a secret: the client's
// error (ErrVersion, ErrUnavailable and ErrNotSent: nothing was sent) and
// the server's log line both name the two versions. The handshake's
// layout is the same in both versions, so the older side here speaks
// exactly the bytes a node of that release does.
func TestMixedVersionsRefused(t *testing.T) {
	const old = protoVersion - 1
	for _, tc := range []struct {
		name           string
		server, client byte
	}{{"old client, new server", protoVersion, old}, {"new client, old server", old, protoVersion}} {
		for _, secret := range [][]byte{nil, []byte("s3cret")} {
			t.Run(fmt.Sprintf("%s, secret %t", tc.name, secret != nil), func(t *testing.T) {
				ts := startServer(t, &testHandler{}, ServerConfig{Secret: secret, version: tc.server})
				c, _ := newTestClient(t, ts.addr, ClientConfig{Secret: secret, version: tc.client})
				err := c.Merge(context.Background(), &MergeRequest{From: "n1"})
				if !errors.Is(err, ErrVersion) || !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrNotSent) {
					t.Fatalf("Merge = %v, want ErrVersion, ErrUnavailable and ErrNotSent", err)
				}
				want := fmt.Sprintf("rpc: protocol version mismatch: the peer speaks version %d, this node version %d", tc.server, tc.client)
				if !strings.HasSuffix(err.Error(), want) {
					t.Errorf("Merge = %q, want it to end in %q", err, want)
				}
				ts.log.waitLog(t, fmt.Sprintf("handshake: client speaks protocol version %d, this node version %d: refused", tc.client, tc.server))
			})
		}
	}
}

func TestLogRateBounded(t *testing.T) {
	ts := startServer(t, &testHandler{}, ServerConfig{})
	for range 3 * logBurst {
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(randomBytes(helloSize))
		expectClosed(t, nc)
		nc.Close()
	}
	ts.stop(t)
	lines := 0
	for _, b := range []byte(ts.log.String()) {
		if b == '\n' {
			lines++
		}
	}
	// The test takes far less than (3*logBurst)*logEvery, so most lines are
	// dropped; allow for a slow machine.
	if lines >= 3*logBurst {
		t.Errorf("%d log lines for %d bad connections: not rate bounded", lines, 3*logBurst)
	}
}

// A handler that panics loses its connection, not the process, on the
// fast path (the reader) as on a goroutine.
func TestHandlerPanic(t *testing.T) {
	for _, tc := range []struct {
		name, log string
		fast      bool
	}{{"goroutine", "panic in handler", false}, {"fast-path", "panic serving connection", true}} {
		t.Run(tc.name, func(t *testing.T) {
			th := &testHandler{}
			th.check = func(ctx context.Context, req *CheckRequest, resp *CheckResponse) error {
				if req.Key == "boom" {
					panic("handler bug")
				}
				return echoCheck(ctx, req, resp)
			}
			var h Handler = th
			if tc.fast {
				h = &fastHandler{testHandler: th, try: func(req *CheckRequest, resp *CheckResponse) (bool, error) {
					return true, th.Check(context.Background(), req, resp)
				}}
			}
			ts := startServer(t, h, ServerConfig{})
			c, _ := newTestClient(t, ts.addr, ClientConfig{})
			var resp CheckResponse
			if err := c.Check(context.Background(), sampleRequest("boom", 1), &resp); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Check(boom) = %v, want ErrUnavailable", err)
			}
			ts.log.waitLog(t, tc.log, "handler bug")
			testkit.Eventually(t, 5*time.Second, "recovery", func() bool { return c.Check(context.Background(), sampleRequest("ok", 1), &resp) == nil })
		})
	}
}
