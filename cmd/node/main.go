// Command ratemesh-node runs one ratemesh peer: gossip, RPC, and the HTTP
// API (with the products demo unless --demo=false). Build it with
//
//	go build -o bin/ratemesh-node ./cmd/node
//
// Every flag has an environment variable (RATEMESH_*); a flag given on the
// command line wins over the environment. Run with --help for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ratemesh/ratemesh"
	"github.com/ratemesh/ratemesh/internal/nodeapi"
)

func main() {
	os.Exit(dispatch(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args []string, getenv func(string) string, stderr io.Writer) int {
	o, err := parseOptions(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "ratemesh-node:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err = serve(ctx, o, log)
	switch {
	case errors.Is(err, errStoppedBeforeReady):
		log.Info("signal received before the node was ready; stopped")
	case err != nil:
		log.Error("node failed", "err", err)
		return 1
	}
	return 0
}

// errStoppedBeforeReady is a signal that arrived while a node was still
// joining: the node stops as asked, which is not a failure (exit 0, so a
// supervisor that stops a node during its start does not see a crash).
var errStoppedBeforeReady = errors.New("stopped before the node was ready")

// serve runs the node (--nodes of them) until ctx ends, then leaves the
// cluster gracefully. --addr-file is written once every node is up and
// joined, and removed once they have stopped.
func serve(ctx context.Context, o *options, log *slog.Logger) error {
	af, err := newAddrFile(o.addrFile)
	if err != nil {
		return err
	}
	if err := o.http.preflight(); err != nil {
		return err
	}
	if err := o.rls.preflight(); err != nil {
		return err
	}
	if err := o.tls.preflight(); err != nil {
		return err
	}
	o.tls.announce(log)
	o.http.auth.announce(log)
	announceSecret(log, o.secret, o.bind)
	// Before the nodes start, so that a SIGHUP meanwhile does not kill the
	// process and a file changed meanwhile is seen.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	rl := newReloader(o, log)
	o.tls.watch(rl)
	peers, err := startAll(ctx, o, log)
	if err != nil {
		return err
	}
	if err := af.publish(os.Getpid(), addrsOf(peers)); err != nil {
		shutdown(peers, o.shutdownTimeout)
		return err
	}
	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		rl.run(ctx, hup)
	}()
	<-ctx.Done()
	<-reloaded
	log.Info("signal received; leaving the cluster", "timeout", o.shutdownTimeout)
	err = shutdown(peers, o.shutdownTimeout)
	return errors.Join(err, af.remove())
}

// startAll starts the --nodes nodes, each joined to the ones before it; on
// an error it stops those it started.
func startAll(ctx context.Context, o *options, log *slog.Logger) ([]*peer, error) {
	var peers []*peer
	for i := 0; i < o.nodes; i++ {
		m, seeds, l := o.member(i), o.join, log
		if i > 0 {
			// Node 0 has joined the seeds; joining it is joining them.
			seeds = []string{peers[0].node.GossipAddr()}
		}
		if o.nodes > 1 {
			l = log.With("node_index", i)
		}
		p, err := start(ctx, m, seeds, l)
		if err != nil {
			shutdown(peers, o.shutdownTimeout)
			return nil, err
		}
		peers = append(peers, p)
	}
	return peers, nil
}

// addrsOf lists where each peer listens, for --addr-file.
func addrsOf(peers []*peer) []addrNode {
	out := make([]addrNode, len(peers))
	for i, p := range peers {
		out[i] = addrNode{Name: p.node.Name(), HTTP: p.web.Addr(), Gossip: p.node.GossipAddr(), RPC: p.node.RPCAddr(), GRPC: p.rls.Addr()}
	}
	return out
}

// peer is one running node and its HTTP server.
type peer struct {
	node *ratemesh.Node
	web  *httpServer
	rls  *rlsServer // nil without --rls-config
	log  *slog.Logger
}

// start starts one node and its HTTP server, and joins seeds; on an error
// it stops what it started. HTTP is bound first, so that with --http-port 0
// the node gossips the port it got, not 0.
func start(ctx context.Context, o *options, seeds []string, log *slog.Logger) (*peer, error) {
	ln, err := o.http.listen()
	if err != nil {
		return nil, err
	}
	bound := *o
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		bound.http.port = a.Port
	}
	node, err := startNode(ctx, &bound, seeds, log)
	if err != nil {
		ln.Close()
		return nil, err
	}
	bound.http.stats = nodeapi.NewStats() // shared by the HTTP API and the rate limit service
	rs, err := startRLS(node, &bound, log)
	var web *httpServer
	if err == nil {
		bound.http.routes = rs.routes
		bound.http.warnings = rs.warnings
		web, err = serveHTTP(node, &bound.http, ln, log)
	}
	if err != nil {
		ln.Close()
		rs.stop(ctx)
		closeCtx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
		defer cancel()
		node.Close(closeCtx)
		return nil, err
	}
	p := &peer{node: node, web: web, rls: rs, log: log}
	if len(seeds) > 0 {
		// The node joins in the background and decides nothing until it
		// has: /readyz says 503 and checks wait meanwhile.
		err := node.WaitJoined(ctx)
		if err != nil {
			// The node has logged why; serve's caller logs the error.
			shutdown([]*peer{p}, o.shutdownTimeout)
			if ctx.Err() != nil {
				return nil, errStoppedBeforeReady
			}
			return nil, err
		}
	}
	rs.serving() // gRPC health: SERVING from now on, NOT_SERVING while joining
	log.Info("ratemesh node ready", "name", node.Name(), "gossip", node.GossipAddr(), "rpc", node.RPCAddr(), "http", web.Addr())
	return p, nil
}

// startNode creates and starts the node of o.
func startNode(ctx context.Context, o *options, seeds []string, log *slog.Logger) (*ratemesh.Node, error) {
	cfg, err := o.nodeConfig(log)
	if err != nil {
		return nil, err
	}
	cfg.Seeds = seeds
	node, err := ratemesh.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := node.Start(ctx); err != nil {
		return nil, err
	}
	return node, nil
}

// shutdown stops each node in the order that loses no request and counts
// none twice, all within timeout: /readyz and gRPC health report
// not-serving; the HTTP and gRPC servers stop accepting and answer every
// request they have (the node still decides them); then the node settles
// its leases, hands its counters off, leaves gossip and answers the checks
// its peers still forward until they have seen it go (Node.Close). A
// client is answered, or finds the port closed and goes to another node:
// it never gets a 5xx for a check. Nodes stop one by one, last started
// first, so that each hands off to members that are still up.
func shutdown(peers []*peer, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var errs []error
	for i := len(peers) - 1; i >= 0; i-- {
		p := peers[i]
		p.node.Drain()
		p.rls.drain()
		err := p.web.Shutdown(ctx)
		p.rls.stop(ctx)
		if cerr := p.node.Close(ctx); err == nil {
			err = cerr
		}
		if err != nil {
			p.log.Error("shutdown", "err", err)
			errs = append(errs, fmt.Errorf("node %s: %w", p.node.Name(), err))
			continue
		}
		p.log.Info("left the cluster")
	}
	return errors.Join(errs...)
}
