package main

import (
	"fmt"
	"io"
	"strings"
)

// mode is what one run of the binary is, as its first argument says.
type mode int

// The modes of the binary.
const (
	// modeNode runs a node (run): no argument, or a flag first.
	modeNode mode = iota
	// modeVersion prints the version: --version, -version or version.
	modeVersion
	// modeHealthcheck probes a node's GET /healthz (healthcheck.go):
	// healthcheck, for container images without a shell or curl.
	modeHealthcheck
	// modeClient runs a client subcommand (cli.go) against a node:
	// members, owner, check, ..., possibly after client flags such as
	// --addr.
	modeClient
	// modeUnknown is any other word: an error naming the nearest command.
	modeUnknown
)

// modeOf says what args ask the binary to be, and the arguments that
// mode runs with: args as given for a node; otherwise the command first
// (moved there from behind leading client flags) and its arguments after.
func modeOf(args []string) (mode, []string) {
	if len(args) == 0 {
		return modeNode, args
	}
	if isVersionFlag(args[0]) {
		return modeVersion, args
	}
	cmdArgs := commandFirst(args)
	switch _, isClient := cliCommands()[cmdArgs[0]]; {
	case cmdArgs[0] == healthcheckCommand:
		return modeHealthcheck, cmdArgs
	case isClient:
		return modeClient, cmdArgs
	case strings.HasPrefix(cmdArgs[0], "-"):
		return modeNode, args // a node's flags
	}
	return modeUnknown, cmdArgs
}

// dispatch is main without the process: it runs the command line args
// (without the program name) as modeOf reads it, and returns the exit
// code. getenv reads the environment (RATEMESH_* variables); a node logs
// to stderr.
func dispatch(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	m, args := modeOf(args)
	switch m {
	case modeVersion:
		printVersion(stdout)
		return 0
	case modeHealthcheck:
		return healthcheck(args[1:], getenv, stderr)
	case modeClient:
		return runCLI(args, getenv, stdout, stderr)
	case modeUnknown:
		fmt.Fprintf(stderr, "ratemesh-node: %s\n", unknownCommand(args[0]))
		return 2
	}
	return run(args, getenv, stderr)
}
