// Package rpc is the msgpack RPC between ratemesh nodes: a node forwards a
// check to the owner of its routing key, hands counters over to their new
// owner with merge, copies its own to their next owners with replica,
// gives unused lease units back with refund, takes a key's entry from its
// previous owner with take, resets a key everywhere, and probes a peer
// with ping.
//
// # Wire protocol
//
// One TCP connection per peer carries many concurrent calls. It starts with a
// handshake (see auth.go): a protocol version byte and, when a secret is
// configured, a mutual HMAC-SHA256 challenge. Both sides must speak the
// same version (4 today): a peer of another is refused during the
// handshake, before any frame, and both sides say which versions met
// (ErrVersion). Then both directions carry frames:
//
//	frame    = length:uint32be body          length ≤ MaxFrame
//	request  = id:uint64be op:uint8 payload  op: 1 ping, 2 check, 3 merge, 4 reset,
//	                                             5 take, 6 replica, 7 refund
//	response = id:uint64be status:uint8 payload
//	           status 0: payload is the msgpack result
//	           status 1: payload is the handler's error message (UTF-8)
//	           status 2: the handler refused the request unapplied (ErrNotServing)
//	           status 3: the handler refused a request meant for another run of its node (ErrOtherRun)
//
// Payloads are msgpack arrays with fixed positions (no field names), written
// and read with msgpack's Encoder/Decoder primitives; see codec.go. Merge,
// replica and refund each carry counter entries and a field of their own
// (MergeRequest, ReplicaRequest, RefundRequest); until version 3 they were
// one op told apart by flags. Their payloads open with their op, so that
// one is never read as another. Responses may come in any order; the id
// matches them to calls. A connection that sends a frame over the cap, a
// truncated frame, an unknown op or a malformed payload (one of another
// op's among them) is closed with a log line.
//
// # Batching
//
// Concurrent calls append their frames to one buffer and a single writer
// goroutine sends whatever has accumulated in one write, so calls that
// arrive while a write is in progress travel together in the next one: no
// timer, no added latency for a lone caller. The server answers all
// requests of one read before writing, so their responses travel together
// too. The handler's fast checks (FastChecker) run inline on the server
// connection's reader; every other call runs on a goroutine of its own,
// bounded per connection, so a handler that blocks delays only its caller.
//
// # Deadlines and errors
//
// Check, Ping, Reset and Take end at the earlier of their context's
// deadline and ClientConfig.CallTimeout; Merge, Replicate and Refund at
// their context's deadline, or after MergeTimeout. Any failure to get an answer (dial, handshake, timeout,
// cancelled context, lost connection, closed client) returns an error
// wrapping ErrUnavailable, so the caller can fail over; ErrAuth and
// ErrVersion say more when the handshake is refused. An answer carrying a
// handler's error is a *RemoteError instead. Calls pending on a connection
// that fails end at once with that error. A call that times out without
// the connection having delivered any response since it was sent closes
// the connection, so that later calls redial rather than queue behind a
// stuck peer.
package rpc
