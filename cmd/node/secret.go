package main

import (
	"log/slog"
	"net"
)

// announceSecret says at start, once, that the node runs without a cluster
// secret: a WARN on a loopback address, where only this host reaches the
// ports; an ERROR on any other, where anyone who reaches them can join the
// cluster, read its gossip and send it RPC.
func announceSecret(log *slog.Logger, secret, bind string) {
	if secret != "" {
		return
	}
	if loopback(bind) {
		log.Warn(noSecretLoopback, "bind", bind)
		return
	}
	log.Error(noSecretExposed, "bind", bind)
}

// The lines announceSecret logs.
const (
	noSecretLoopback = "no --secret: gossip is not encrypted and RPC is not authenticated; fine while every node is on this host, " +
		"but before nodes share a network set --secret (RATEMESH_SECRET) to the same random string on each, e.g. from openssl rand -hex 32"
	noSecretExposed = "no --secret on a non-loopback address: anyone who reaches the gossip and RPC ports can join this cluster, read its gossip " +
		"and change its counts; set --secret (RATEMESH_SECRET) to the same random string on every node, e.g. from openssl rand -hex 32"
)

// loopback reports whether bind listens on this host only.
func loopback(bind string) bool {
	if bind == "localhost" {
		return true
	}
	ip := net.ParseIP(bind)
	return ip != nil && ip.IsLoopback()
}
