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
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ratemesh/ratemesh"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
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
	if err := serve(ctx, o, log); err != nil {
		log.Error("node failed", "err", err)
		return 1
	}
	return 0
}

// serve runs the node until ctx ends, then leaves the cluster gracefully.
func serve(ctx context.Context, o *options, log *slog.Logger) error {
	cfg, err := o.nodeConfig(log)
	if err != nil {
		return err
	}
	node, err := ratemesh.New(cfg)
	if err != nil {
		return err
	}
	if err := node.Start(ctx); err != nil {
		return err
	}
	web, err := startHTTP(node, &o.http, log)
	if err != nil {
		closeCtx, cancel := context.WithTimeout(context.Background(), o.leaveTimeout)
		defer cancel()
		node.Close(closeCtx)
		return err
	}
	if len(o.join) > 0 {
		joinCtx, cancel := context.WithTimeout(ctx, o.joinTimeout)
		err := node.Join(joinCtx, o.join...)
		cancel()
		if err != nil {
			log.Error("join failed", "err", err)
			shutdown(node, web, o.leaveTimeout, log)
			return err
		}
	}
	log.Info("ratemesh node ready", "name", node.Name(), "gossip", node.GossipAddr(), "rpc", node.RPCAddr(), "http", web.Addr())
	<-ctx.Done()
	log.Info("signal received; leaving the cluster", "timeout", o.leaveTimeout)
	return shutdown(node, web, o.leaveTimeout, log)
}

// shutdown hands the node's counters off and leaves, then stops HTTP, all
// within timeout. HTTP stays up during the leave so that clients routed
// here are still answered (their checks forwarded to the new owners).
func shutdown(node *ratemesh.Node, web *httpServer, timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := node.Close(ctx)
	if herr := web.Shutdown(ctx); err == nil {
		err = herr
	}
	if err != nil {
		log.Error("shutdown", "err", err)
		return err
	}
	log.Info("left the cluster")
	return nil
}
