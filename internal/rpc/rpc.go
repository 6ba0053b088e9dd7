package rpc

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
)

// CheckRequest asks the owner of Key to decide all Counters at once, taking
// Cost from each (0 peeks).
type CheckRequest struct {
	Key      string
	Counters []bucket.Counter
	Cost     int64
	// Hops counts how often the check has been passed on from node to
	// node; the cluster bounds it to prevent loops. The RPC carries it
	// unchanged. Zero for a check sent by the node that received it.
	Hops int
	// Sent is when the caller sent the check, by its monotonic clock (the
	// time since its Client was made), and Wait how long it waits for the
	// answer. Client.Check sets both. A server that reads the check Wait
	// or more later than its connection's fastest (it was paused, or its
	// reader stalled) drops it unapplied: the caller has given up and
	// decides it elsewhere (see expiry). Zero Wait: no limit.
	Sent, Wait time.Duration
}

// CheckResponse is the owner's decision: one Status per counter of the
// request, in the same order, and the name of the node that decided.
type CheckResponse struct {
	Allowed  bool
	Statuses []bucket.Status
	Node     string
}

// MergeRequest hands counters over to the node that now owns their keys
// (a handoff, or the return of counts a successor kept while the owner
// was away): the receiver adds them to what it holds.
type MergeRequest struct {
	// From names the sending node.
	From string
	// Bases, when not empty, has one entry per entry of Entries, of the
	// same key: the receiver's replica that the sender continued the key
	// from while the receiver was away, as the receiver's incarnation
	// BaseIncarnation sent it. Only the receiver knows for sure whether it
	// still runs that incarnation (gossip may not have told the sender of
	// a restart yet), so it decides: the same incarnation still holds the
	// bases' hits and merges each entry less its base; another one lost
	// them and takes the entries whole, in place of what it restored from
	// its data file for those keys.
	BaseIncarnation uint64
	Bases           []bucket.Entry
	// FillIn marks counts read from the sender's data file, of keys it
	// held before it restarted (a promoted replica of the receiver's, say)
	// and does not know the fate of since: the receiver takes each one
	// only if it holds nothing of its key, since what it holds is the
	// newer count. A fill-in carries no bases.
	FillIn bool
	// Beside marks counts the sender made, or was handed, under the fail
	// policy while the keys' owner did not answer, starting from nothing:
	// they hold none of the owner's count. A receiver that holds a replica
	// of such a key, of an owner gone from its ring, continues from the
	// replica and the count together (cluster's replica_beside.go). A
	// merge beside carries no bases and is no fill-in.
	Beside bool
	// ToIncarnation is the receiver's incarnation as the sender's view
	// knew it when it planned the merge (0: not known). A receiver that
	// runs another incarnation — it restarted since — refuses the merge
	// unapplied (ErrOtherRun): the sender, once its view knows the new
	// run, hands back the replicas of the earlier one first, and only
	// then the counts made beside them (cluster's reclaim). Taken first,
	// a count made beside would be replicated by the new run, which makes
	// the earlier run's replica of the key look stale, and it was dropped.
	// A merge with bases is taken by any run: the receiver judges it by
	// BaseIncarnation, and it holds the replica's hits itself.
	ToIncarnation uint64
	// FromIncarnation is the sender's incarnation. A receiver that
	// continued one of the sender's keys from the sender's replica (it
	// routed around the sender: a leave it heard of late, say) takes that
	// key's entry less the replica, which the entry holds too, when this
	// run sent the replica.
	FromIncarnation uint64
	Entries         []bucket.Entry
}

// ReplicaRequest carries copies of the sender's own counters, kept by the
// receiver apart from its own for the case the sender fails. A replica
// overwrites the previous one of its key; it is never added to a count.
type ReplicaRequest struct {
	// From names the sending node, the keys' owner.
	From string
	// Incarnation is the sender's (cluster.Meta.Incarnation): a replica
	// is filed under the incarnation that sent it, even before the
	// receiver's gossip has seen that incarnation.
	Incarnation uint64
	Entries     []bucket.Entry
}

// RefundRequest gives back fixed-window units the sender consumed ahead (a
// lease) and did not use: each state's Count comes off the counter if its
// window still starts at Start (see bucket.Store.Refund).
type RefundRequest struct {
	// From names the node the units are given back for: the lease's
	// holder, also when a node passes the refund on.
	From string
	// Hops counts how often the refund was passed on by nodes that did
	// not hold its key (leaving ones), so that it is not passed around.
	Hops    int
	Entries []bucket.Entry
}

// TakeResponse is the answer to a TakeRequest.
type TakeResponse struct {
	// Entry is the key's entry, when Found.
	Entry bucket.Entry
	Found bool
	// Supersedes is MergeRequest.Supersedes for the entry taken.
	Supersedes bool
}

// TakeRequest asks a key's previous owner to give up its entry for Key to
// the node To (its name) at ToAddr (its RPC address).
type TakeRequest struct {
	Key    string
	To     string
	ToAddr string
	// Incarnation is the taker's (cluster.Meta.Incarnation), which the
	// giver's gossip may not have seen yet: it tells whether the taker
	// restarted since it sent the replicas the giver holds.
	Incarnation uint64
}

// Handler serves the operations of a Server. Every method may block (call
// a peer, wait for a transfer): the server runs each call on a goroutine
// of its own, at most a few hundred at once per connection, so no handler
// stalls the other requests of its connection. A handler that can answer
// most checks from memory at once also implements FastChecker.
//
// req and resp belong to the server and must not be retained after the
// method returns (the strings in them may be kept); Merge, Replicate and
// Refund own theirs.
// ctx is cancelled when the Server closes or the connection has ended. An
// error returned by a handler reaches the caller as a *RemoteError.
type Handler interface {
	Check(ctx context.Context, req *CheckRequest, resp *CheckResponse) error
	// Merge adds handed-over counts to this node's.
	Merge(ctx context.Context, req *MergeRequest) error
	// Replicate keeps the sender's replicas.
	Replicate(ctx context.Context, req *ReplicaRequest) error
	// Refund takes unused lease units off their counters.
	Refund(ctx context.Context, req *RefundRequest) error
	Reset(ctx context.Context, key string) error
	// Take removes and returns the entry of req.Key; found is false when
	// there is none.
	Take(ctx context.Context, req *TakeRequest) (TakeResponse, error)
}

// FastChecker is the optional fast path of a Handler. The server calls
// TryCheck on the connection's reader goroutine, where a check costs no
// goroutine and no handoff: for an in-memory decision that measured two to
// three times the throughput of a goroutine per check
// (BenchmarkRPCCheckParallel). TryCheck must not block: it answers
// (done true, with resp or an error) only what it decides at once, and
// declines (done false) anything that may wait. A declined check goes to
// Check on a goroutine, with resp reset, as if TryCheck had not run.
type FastChecker interface {
	TryCheck(req *CheckRequest, resp *CheckResponse) (done bool, err error)
}

// Defaults used for zero fields of ServerConfig and ClientConfig.
const (
	// DefaultMaxFrame caps the size of one frame (4 MiB).
	DefaultMaxFrame = 4 << 20
	// DefaultDialTimeout bounds connecting to a peer.
	DefaultDialTimeout = time.Second
	// DefaultHandshakeTimeout bounds the hello/authentication exchange.
	DefaultHandshakeTimeout = time.Second
	// DefaultCallTimeout bounds Check, Ping and Reset. It is far above the
	// loopback/LAN round trip (tens of µs) so that a GC pause or a busy
	// CPU does not turn into a spurious failover, and low enough that a
	// dead peer costs one short wait.
	DefaultCallTimeout = 100 * time.Millisecond
	// DefaultMergeTimeout bounds Merge, Replicate and Refund when their
	// context has no deadline: they may carry megabytes of counters.
	DefaultMergeTimeout = 5 * time.Second
	// DefaultIOTimeout bounds writing a batch of frames and reading the
	// rest of a frame once its length has arrived.
	DefaultIOTimeout = 5 * time.Second
)

// ServerConfig configures a Server. The zero value is usable: no secret, the
// default logger and the defaults above.
type ServerConfig struct {
	// Secret, when set, makes every connection prove knowledge of it (and
	// proves this server's) before any request is served. Peers must use
	// the same secret.
	Secret []byte
	// Logger receives a line per refused or broken connection (rate
	// bounded). Nil discards them, as everywhere in ratemesh.
	Logger *slog.Logger
	// MaxFrame caps one request frame in bytes; a connection announcing a
	// larger frame is closed. 0 means DefaultMaxFrame.
	MaxFrame int
	// HandshakeTimeout bounds the hello/authentication exchange of a new
	// connection. 0 means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// IOTimeout bounds writing responses and reading the rest of a frame
	// whose length has arrived; a peer slower than that is disconnected.
	// Idle connections are kept. 0 means DefaultIOTimeout.
	IOTimeout time.Duration

	// version is the protocol version announced in the handshake; 0
	// means protoVersion. Tests set it to play a node of another
	// release.
	version byte
}

// ClientConfig configures a Client. The zero value is usable: no secret, the
// default logger and the defaults above.
type ClientConfig struct {
	// Secret must equal the server's (both empty, or both the same bytes).
	Secret []byte
	// TLS, when set, wraps every connection in TLS with this
	// configuration (the server's listener must then be TLS too); the
	// secret's handshake runs inside it. Nil means plain TCP.
	TLS *tls.Config
	// DialTimeout bounds the TCP connect. 0 means DefaultDialTimeout.
	DialTimeout time.Duration
	// CallTimeout bounds Check, Ping and Reset, including any wait for a
	// connection; an earlier context deadline wins. 0 means
	// DefaultCallTimeout.
	CallTimeout time.Duration
	// MergeTimeout bounds Merge, Replicate and Refund when their context
	// has no deadline (a context deadline alone governs otherwise). 0
	// means DefaultMergeTimeout.
	MergeTimeout time.Duration
	// HandshakeTimeout bounds the hello/authentication exchange after
	// connecting. 0 means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// IOTimeout bounds writing a batch of requests. 0 means
	// DefaultIOTimeout.
	IOTimeout time.Duration
	// Logger receives connection losses and dial failures (rate bounded).
	// Nil discards them, as everywhere in ratemesh.
	Logger *slog.Logger
	// MaxFrame caps one frame in bytes, both ways: a larger request fails
	// with ErrTooLarge, a larger response closes the connection. 0 means
	// DefaultMaxFrame.
	MaxFrame int

	// version is as in ServerConfig.
	version byte
}

var (
	// ErrUnavailable is wrapped by every error that means "the peer did not
	// answer": dial failure, handshake failure, timeout, cancelled context,
	// lost connection, closed client. The caller may fail over.
	ErrUnavailable = errors.New("rpc: peer unavailable")
	// ErrAuth is wrapped (with ErrUnavailable) when the handshake fails
	// because the secrets differ or only one side has one.
	ErrAuth = errors.New("rpc: peer authentication failed (wrong or missing secret)")
	// ErrVersion is wrapped (with ErrUnavailable) when the peer speaks
	// another protocol version or is not a ratemesh RPC server.
	ErrVersion = errors.New("rpc: protocol version mismatch")
	// ErrClosed is wrapped (with ErrUnavailable) by calls on a closed
	// Client and by calls pending when it was closed.
	ErrClosed = errors.New("rpc: client closed")
	// ErrTooLarge is returned, unwrapped by ErrUnavailable, when a request
	// does not fit in MaxFrame: split it and retry.
	ErrTooLarge = errors.New("rpc: request exceeds the frame size cap")
	// ErrNotSent is wrapped (with ErrUnavailable) when the request never
	// left this node — the dial or handshake failed, or the client was
	// closed or retiring before it was sent — so the peer surely did not
	// apply it and it may be sent elsewhere. Other unavailable errors (a
	// timeout, a connection lost after the request was written) leave it
	// unknown whether the peer applied it.
	ErrNotSent = errors.New("rpc: request not sent")
	// ErrNoAnswer is wrapped (with ErrUnavailable) when a request was
	// sent and no answer came within the call's timeout or its context:
	// the peer may be paused or cut off rather than gone, and may still
	// apply the request when it runs again. Sent elsewhere as well, it
	// could be applied twice.
	ErrNoAnswer = errors.New("rpc: no answer in time (the peer may still apply the request)")
	// ErrNotServing is returned by a handler that refuses a request
	// without applying it (a node not joined yet): the caller sees
	// ErrUnavailable and ErrNotSent, and may send it elsewhere.
	ErrNotServing = errors.New("rpc: peer not serving yet")
	// ErrOtherRun is returned by a handler that refuses a request meant
	// for another run of its node (MergeRequest.ToIncarnation), without
	// applying it. The caller sees it unwrapped by ErrUnavailable: the peer
	// answers, and the caller's view of it is what is behind.
	ErrOtherRun = errors.New("rpc: request meant for another run of the peer, which restarted since; nothing applied")
)

// ServerReadiness is implemented by a Handler that is not always ready:
// while Serving returns an error, pings are answered with it (as
// ErrNotServing) so that callers keep routing around this node.
type ServerReadiness interface {
	Serving() error
}

// RemoteError is a handler's error as reported by the peer: the call reached
// the peer, which answered with an error. It does not wrap ErrUnavailable.
type RemoteError struct {
	Msg string
}

// Error returns the remote message prefixed with "rpc: remote: ".
func (e *RemoteError) Error() string { return "rpc: remote: " + e.Msg }
