package ratemesh

// Hooks for fault tests in package ratemesh_test.

// Crash stops n as a crash would: no handoff, no leave message; listeners
// close and peers learn of it only by failing to reach it.
func Crash(n *Node) {
	if n.closing.Swap(true) {
		return
	}
	n.closed.Store(true)
	close(n.stop)
	n.cl.Kill()
	n.wg.Wait()
}

// CutRPC closes n's RPC server while its gossip goes on: peers see it
// alive but cannot reach it, the case the fail policy is for.
func CutRPC(n *Node) { n.cl.CutRPC() }
