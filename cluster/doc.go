// Package cluster joins ratemesh nodes into one limiter: memberlist gossip
// for membership (membership.go), a consistent-hash ring for ownership (the
// view rebuilt in cluster.go), and the msgpack RPC of internal/rpc to
// forward each check to its key's owner (transport.go). Each key has one
// owner, whose table (a bucket.Store) holds the key's counts and decides its
// checks, so a limit holds exactly across nodes; most of the package is
// there to keep it so while members join, leave, crash and pause. The
// reasons and measurements are in docs/design.md ("How a check travels",
// "Membership: joins, leaves, crashes and partitions", "Where a count lives,
// and how counts meet again"); this comment maps the code.
//
// # A check's path
//
// Cluster.Check (route.go) admits a check with enter (a leaving node serves
// it in serveLeaving instead, handoff.go), catches up with gossip (catchUp)
// and routes by the view's routing ring: the members gossip reports, less
// the peers this node suspects. For a key owned elsewhere it tries a lease
// of the key first (leaser.decide), then the deny cache (denycache.go: a
// denial stands until the owner's retry-after), and only then one RPC to the
// owner over its Peer (peerSet.get). An allowed answer heats the key for
// leases (leaser.observe), a denial fills the cache.
//
// On the owner the RPC server calls handler.TryCheck on the connection's
// reader: it decides at once (decideUnlessMoved) what needs no wait, so no
// check stalls a connection, and declines the rest (a join under way, a key
// moving away or maybe still on its previous owner, a ring that disagrees
// with the sender's) to handler.Check, which runs on a goroutine of its own.
// That may pass the check once more, to the owner it knows (passOn,
// maxHops); else serveLocal (transfer.go) follows a key that moved away,
// pulls one that may still be on its previous owner, and decides with
// decideUnlessMoved. decideLocal is the same without following a move, for a
// leaving node.
//
// An owner that does not answer (rpc.ErrUnavailable) is suspected at once
// (peerSet.suspect, peers.go): this node's routing ring drops it without
// waiting for gossip, and the check is tried once on the key's next owner.
// When that owner is this node (and the key did not move away from here), or
// it fails too, the fail policy decides (decideFallback, which first
// continues from a replica if this node holds one) and Check reports
// fallback. probeLoop pings the suspects every ProbeInterval; one that
// answers, pulls a key from here (handler.Take) or leaves gossip is
// suspected no more.
//
// # A move of counts
//
// A key's count lives in one table at a time and moves with the ring, as the
// comment atop transfer.go says. When a rebuild changes the routing ring,
// the handoff loop (handoff.go) runs handoffAll: batch by batch, the entries
// this node no longer owns leave its table and are merged into their owners
// (send; a batch that surely did not land is re-planned once on the ring of
// then, else put back; one sent and not answered in time is left to its
// peer, which may still apply it: leaveToPeer). A node that has just joined also pulls: for pullWindow,
// the first check of a key whose partition came to it takes the entry from
// the previous owner first (pull, and take on the other side; view.inbound),
// since checks may reach it before its peers' handoffs do. A pull that fails
// sends the check to the previous owner, which may still hold the count. A
// node that leaves (Close) stops admitting changes (enter, awaitChanges),
// gives its lease slices back, rebuilds its ring without itself and hands
// everything off before it leaves gossip.
//
// A sender marks each key it gives away as moved (moves: to whom, and a
// channel closed once the entry has landed) in one step with taking the
// entry out, under movingMu. So a check or refund that still reaches it
// waits for the entry to land and follows it, and a pull waits for it too:
// the count is decided in one place. A mark expires after moveTTL, and goes
// when the key is merged back (mergeHere).
//
// A node restarted with a data file keeps the file's counts apart
// (Cluster.Restore, restore.go): its successor may have counted on from
// newer replicas meanwhile. A count that comes back marked Supersedes (a
// pull, a handoff) replaces the file's; otherwise the file's count joins the
// table when this node first decides the key (adopt) or goes to a puller
// (take), and what is left of the keys it owns joins pullWindow after the
// join (adoptRest), or at Close (adoptAll). The file's counts of keys others
// own go to them as fill-ins, which they take only for keys they hold
// nothing of (restore_offer.go).
//
// # A replica's life
//
// replica.go, replica_resync.go. A key changed here by an allowed check, a
// merge or a refund is noted (replicator.changed, which never blocks); every
// replicaFlush the replication loop sends the keys this node owns to their
// next Config.Replicas owners (flush), over connections of its own so that
// replicas never queue ahead of checks. A successor keeps them apart from
// its table, a store per owner, each replica replacing the last (hold).
// Before it decides a key its table lacks while the key's owner is out of
// its routing ring or suspected, it moves that owner's replica into the
// table (promote) and remembers it as the base. When the owner is back the
// key goes home by a handoff, or by the owner's pull (replicator.give,
// replica_home.go): less
// the base if the owner still runs the incarnation that sent it (it still
// holds those hits), whole and superseding its data file if it restarted
// (it lost them). Which one is the owner's call, since gossip may not have
// told this node of a restart yet: a pull says the puller's incarnation,
// and a handoff carries the bases and the incarnation that sent them
// (baseOf, onBases in route.go). A node that receives a key as its owner drops
// the sender's replica of it, and one of that run still on its way
// (handedIn); a replica and a count made beside it go home together
// (replica_beside.go); sweep drops expired replicas and
// promotions. Replication sends changes only, so when members change an
// owner sends every key to the successors that may lack it (resync). A
// successor keeps each run of an owner's replicas apart, and hands those
// of earlier runs back to a restarted owner unasked (replica_reclaim.go);
// once a view settles, a node drops the copies of keys it is no longer a
// successor of (replica_prune.go), which would be stale. See
// "Replicas" and "A crash and a restart: which count is authoritative" in
// docs/design.md.
//
// # A lease's life
//
// lease.go. Each allowed forward heats its key (leaser.observe); a key
// forwarded leaseHeat times within leaseHeatWindow, with fixed windows only,
// gets a slice asked for on a goroutine (askLocked, ask). The owner sees an
// ordinary check of the slice's cost, all or nothing, so it never grants
// more than remains. The asker holds the slice (hold), Cluster.Check answers
// checks of exactly its counters from it (leaser.decide), and a slice
// running low or old asks for the next (renew). The lease loop ends slices
// that ran out, expired or whose key changed owner (expire), settle ends all
// at Close, and what is left goes back as a refund (giveBack) to the key's
// owner. There refundHere applies it where the count is now (here, where it
// moved, or on a joiner's previous owner) or drops it. See "Leases for hot
// keys" in docs/design.md.
//
// # Lock order
//
// A mutex may be locked while mutexes of the lines above it are held, never
// while one of its own line or a line below is held:
//
//	Cluster.handoffMu
//	Cluster.movingMu, Cluster.rebuildMu
//	replicator.mu
//	peerSet.mu, membership.mu
//	moves.mu, restore.mu, replicator.dirtyMu, replicator.connsMu, Cluster.pullMu, leaser.mu, denyShard.mu, tcpTransport.mu
//
// These nestings exist: handoffAll holds handoffMu over movingMu and over
// send, whose failed merges suspect a peer and so rebuild the ring. Under
// movingMu, which makes taking counts out and recording where they went one
// step, planMoves calls replicator.baseOf and take calls replicator.give
// (replicator.mu), both mark moves (moves.mu), take takes restored counts
// (restore.mu) and mergeHere notes changes (replicator.dirtyMu). promote
// holds replicator.mu over peerSet.isSuspect and restore.forget. rebuild holds rebuildMu over
// peerSet.isSuspect and peerSet.sync, and over gossip's peers, which takes
// memberlist's node lock and logs a bad member under membership.mu
// (memberlist also calls NotifyConflict, which takes membership.mu, under
// that node lock). bucket.Store's shard locks come below all of these; its
// one callback into this package, handoffAll's notMine, locks nothing.
//
// No mutex is held across an RPC or a wait but handoffMu: pull releases
// pullMu before its Take, slices are asked for on a goroutine, take,
// serveLeaving and refundOne release movingMu before they wait for a move,
// and suspect and clear rebuild after releasing peerSet.mu. handoffMu is
// held across a handoff's merges, each bounded by the RPC client's merge
// timeout (rpc.DefaultMergeTimeout), so that Close waits for a background
// handoff rather than cut a batch off; the cost is that Close can outlast
// its ctx while a merge to a stalled peer runs. TestDocLockOrder keeps the
// list above and the package's mutexes in step, and TestLockOrder checks
// the source against it.
package cluster
