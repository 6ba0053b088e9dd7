package rpc

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
)

// Handshake. The client opens with
//
//	hello  = "RMSH" version:uint8 mode:uint8 nonceC[32]
//
// and the server answers
//
//	reply  = "RMSH" version:uint8 mode:uint8 status:uint8 nonceS[32] macS[32]
//
// where version is each side's protoVersion, mode is 1 when the side has a
// secret and 0 otherwise, and status is 0 (go on), 1 (version mismatch:
// each side then says which two versions met) or 2 (one side has a
// secret, the other not); on a non-zero status the server closes. With a
// secret the client checks macS, then proves itself with
//
//	proof  = macC[32]
//
// and the server answers one verdict byte: 0 (accepted) or 1 (wrong secret,
// then closes). Each MAC is HMAC-SHA256(secret, role ‖ version ‖ nonceC ‖
// nonceS) with role "ratemesh-rpc server" or "ratemesh-rpc client": both
// nonces make it fresh on both sides, and the role keeps a MAC one side
// produced from serving as the other side's proof (reflection). The
// handshake authenticates the peers; it does not encrypt the connection.

const (
	// protoVersion is raised whenever a frame changes. 3: merge, replica
	// and refund are ops of their own (they were one op with flags in 2).
	// 4: a merge carries the bases of counts continued from the
	// receiver's replica, in place of a flag the sender set from gossip.
	// 5: a merge says whether it is a fill-in from a data file.
	// 6: a merge names the run of the receiver it is meant for and the
	// run that sent it, and a response can refuse a request meant for
	// another run (statusOtherRun).
	// 7: a check says when it was sent and how long its caller waits
	// (CheckRequest.Sent, Wait), so that a server paused meanwhile drops
	// it (ErrExpired).
	// 8: a merge says whether its counts were made beside their keys'
	// owner, under the fail policy (MergeRequest.Beside).
	// The handshake's layout stays as it is across versions, so that a
	// node can tell a peer of any version which one it speaks.
	protoVersion = 8
	magic        = "RMSH"
	nonceSize    = 32
	macSize      = sha256.Size
	helloSize    = len(magic) + 2 + nonceSize
	replySize    = len(magic) + 3 + nonceSize + macSize

	modePlain = 0
	modeHMAC  = 1

	hsOK         = 0
	hsBadVersion = 1
	hsBadMode    = 2

	verdictOK  = 0
	verdictBad = 1

	roleServer = "ratemesh-rpc server"
	roleClient = "ratemesh-rpc client"
)

func modeOf(secret []byte) byte {
	if len(secret) > 0 {
		return modeHMAC
	}
	return modePlain
}

func handshakeMAC(secret []byte, role string, version byte, nonceC, nonceS []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(role))
	m.Write([]byte{version})
	m.Write(nonceC)
	m.Write(nonceS)
	return m.Sum(nil)
}

// clientHandshake runs the client side, speaking version, on a fresh
// connection whose deadline the caller has set. Errors wrap ErrAuth or
// ErrVersion when the peer answered but does not match; a version
// mismatch names both versions.
func clientHandshake(nc net.Conn, br *bufio.Reader, secret []byte, version byte) error {
	var hello [helloSize]byte
	copy(hello[:], magic)
	hello[4] = version
	hello[5] = modeOf(secret)
	nonceC := hello[6:]
	rand.Read(nonceC)
	if _, err := nc.Write(hello[:]); err != nil {
		return fmt.Errorf("sending hello: %w", err)
	}
	var reply [replySize]byte
	if _, err := io.ReadFull(br, reply[:]); err != nil {
		return fmt.Errorf("reading hello: %w", err)
	}
	if string(reply[:4]) != magic {
		return fmt.Errorf("%w: peer is not a ratemesh RPC server", ErrVersion)
	}
	theirs, mode, status := reply[4], reply[5], reply[6]
	nonceS, macS := reply[7:7+nonceSize], reply[7+nonceSize:]
	switch {
	case status == hsBadVersion || theirs != version:
		return fmt.Errorf("%w: the peer speaks version %d, this node version %d", ErrVersion, theirs, version)
	case status == hsBadMode || mode != modeOf(secret):
		if len(secret) > 0 {
			return fmt.Errorf("%w: this node has a secret, the peer has none", ErrAuth)
		}
		return fmt.Errorf("%w: the peer requires a secret, this node has none", ErrAuth)
	case status != hsOK:
		return fmt.Errorf("%w: handshake status %d", ErrVersion, status)
	case mode == modePlain:
		return nil
	}
	if !hmac.Equal(macS, handshakeMAC(secret, roleServer, version, nonceC, nonceS)) {
		return fmt.Errorf("%w: the peer does not know this node's secret", ErrAuth)
	}
	if _, err := nc.Write(handshakeMAC(secret, roleClient, version, nonceC, nonceS)); err != nil {
		return fmt.Errorf("sending proof: %w", err)
	}
	verdict, err := br.ReadByte()
	if err != nil {
		return fmt.Errorf("reading verdict: %w", err)
	}
	if verdict != verdictOK {
		return fmt.Errorf("%w: the peer refused this node's secret", ErrAuth)
	}
	return nil
}

// serverHandshake runs the server side, speaking version, on a fresh
// connection whose deadline the caller has set. A non-nil error means the
// connection must be closed; the client has been told why when it spoke
// the protocol.
func serverHandshake(nc net.Conn, br *bufio.Reader, secret []byte, version byte) error {
	var hello [helloSize]byte
	if _, err := io.ReadFull(br, hello[:]); err != nil {
		return fmt.Errorf("reading hello: %w", err)
	}
	if string(hello[:4]) != magic {
		return fmt.Errorf("not a ratemesh RPC client (bad magic %q)", hello[:4])
	}
	var reply [replySize]byte
	copy(reply[:], magic)
	reply[4] = version
	reply[5] = modeOf(secret)
	nonceC, nonceS := hello[6:], reply[7:7+nonceSize]
	var refuse error
	switch {
	case hello[4] != version:
		reply[6] = hsBadVersion
		refuse = fmt.Errorf("client speaks protocol version %d, this node version %d: refused", hello[4], version)
	case hello[5] != reply[5] && len(secret) > 0:
		reply[6] = hsBadMode
		refuse = fmt.Errorf("client has no secret: refused")
	case hello[5] != reply[5]:
		reply[6] = hsBadMode
		refuse = fmt.Errorf("client has a secret, this node none: refused")
	default:
		rand.Read(nonceS)
		if len(secret) > 0 {
			copy(reply[7+nonceSize:], handshakeMAC(secret, roleServer, version, nonceC, nonceS))
		}
	}
	if _, err := nc.Write(reply[:]); err != nil && refuse == nil {
		return fmt.Errorf("sending hello: %w", err)
	}
	if refuse != nil || len(secret) == 0 {
		return refuse
	}
	var proof [macSize]byte
	if _, err := io.ReadFull(br, proof[:]); err != nil {
		return fmt.Errorf("reading proof (client refused this node's secret?): %w", err)
	}
	if !hmac.Equal(proof[:], handshakeMAC(secret, roleClient, version, nonceC, nonceS)) {
		nc.Write([]byte{verdictBad})
		return fmt.Errorf("wrong secret: refused")
	}
	if _, err := nc.Write([]byte{verdictOK}); err != nil {
		return fmt.Errorf("sending verdict: %w", err)
	}
	return nil
}
