package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"
)

// The binary is also a client of a running node: `ratemesh-node members`,
// `owner KEY`, `check KEY LIMITS`, `reset KEY`, `limits [--key KEY]` and
// `top` ask a node's HTTP API (--addr, default the local node) and print
// a table, or the API's JSON with --json. Without one of these words
// first, the binary runs a node, as it always did. docs/cli.md has the
// details.

// cliCommand is one subcommand: what it needs of its arguments and the
// request it makes.
type cliCommand struct {
	usage string // after the command's name
	help  string
	nargs int // positional arguments
	run   func(cl *cliClient, args []string) error
}

// cliCommands are the subcommands, by name.
func cliCommands() map[string]cliCommand {
	return map[string]cliCommand{
		"members": {usage: "", help: "the members the node sees, their state and share of the ring", run: cmdMembers},
		"owner":   {usage: "KEY", help: "the member that owns a routing key", nargs: 1, run: cmdOwner},
		"check":   {usage: "KEY LIMITS [--cost N] [--strategy S] [--scope S]", help: "one check of the check API (counted under check|KEY)", nargs: 2, run: cmdCheck},
		"reset":   {usage: "KEY", help: "forget a routing key's counters on every member (needs --admin-token)", nargs: 1, run: cmdReset},
		"limits":  {usage: "[--key KEY]", help: "the policy's limits, and with --key that key's state on its owner", run: cmdLimits},
		"top":     {usage: "[--node]", help: "the keys denied most right now, cluster-wide (--node: per node too); keys are hashed unless --token or --admin-token is given", run: cmdTop},
		"json":    {usage: "FILE|-", help: "print the JSON in FILE (- for stdin), e.g. --addr-file's, through --format; asks no node", nargs: 1, run: cmdJSON},
	}
}

// cliClient is the parsed command line of a subcommand and its HTTP client.
type cliClient struct {
	addr, token, adminToken string
	json, perNode           bool
	key, strategy, scope    string
	cost                    int64
	costSet                 bool
	format                  *template.Template // --format; nil: a table or --json
	in                      io.Reader          // stdin, for json -
	out                     io.Writer
	http                    *http.Client
	timeout                 time.Duration
}

// runCLI runs the client subcommand args[0] (a key of cliCommands) with
// the rest of args, and returns the exit code: 0 done, 1 the node refused
// or could not be reached, 2 bad usage.
func runCLI(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	name := args[0]
	cmd := cliCommands()[name]
	cl, pos, err := parseCLI(name, cmd, args[1:], getenv, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "ratemesh-node %s: %v\n", name, err)
		return 2
	}
	defer cl.http.CloseIdleConnections()
	if err := cmd.run(cl, pos); err != nil {
		fmt.Fprintf(stderr, "ratemesh-node %s: %v\n", name, err)
		return 1
	}
	return 0
}

// parseCLI parses the flags of a subcommand, which may come before, after
// or between its positional arguments.
func parseCLI(name string, cmd cliCommand, args []string, getenv func(string) string, stdout, stderr io.Writer) (*cliClient, []string, error) {
	fs := flag.NewFlagSet("ratemesh-node "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ratemesh-node %s %s [flags]\n\n%s.\n\n", name, cmd.usage, cmd.help)
		fs.PrintDefaults()
	}
	cl := &cliClient{out: stdout, in: os.Stdin}
	fs.StringVar(&cl.addr, "addr", localHTTPAddr(getenv), "HTTP address (host:port) of the node to ask (env RATEMESH_ADDR; default: the local node's, from RATEMESH_BIND and RATEMESH_HTTP_PORT)")
	fs.StringVar(&cl.token, "token", firstToken(getenv("RATEMESH_API_TOKEN")), "bearer token of the node's /v1/ API, when the node has --api-token (env RATEMESH_API_TOKEN, its first token)")
	fs.StringVar(&cl.adminToken, "admin-token", getenv("RATEMESH_ADMIN_TOKEN"), "the node's admin token, for reset (env RATEMESH_ADMIN_TOKEN)")
	fs.BoolVar(&cl.json, "json", false, "print the API's JSON instead of a table")
	fs.DurationVar(&cl.timeout, "timeout", 5*time.Second, "how long to wait for the node")
	format := fs.String("format", "", "print the JSON through this Go template, fields by their JSON names, e.g. '{{range .}}{{.name}} {{.http_addr}}{{\"\\n\"}}{{end}}' (docs/cli.md)")
	switch name {
	case "check":
		fs.Int64Var(&cl.cost, "cost", 1, "what the check consumes; 0 looks without consuming")
		fs.StringVar(&cl.strategy, "strategy", "", "fixed-window (default), sliding-window-counter, moving-window or token-bucket")
		fs.StringVar(&cl.scope, "scope", "", "names the counters (default: default)")
	case "limits":
		fs.StringVar(&cl.key, "key", "", "routing key whose state to show, e.g. apikey:alice or ip:192.0.2.7")
	case "top":
		fs.BoolVar(&cl.perNode, "node", false, "also list each node's own top")
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	fs.Visit(func(f *flag.Flag) { cl.costSet = cl.costSet || f.Name == "cost" })
	if *format != "" {
		var err error
		if cl.format, err = parseFormat(*format); err != nil {
			return nil, nil, err
		}
	}
	if len(pos) != cmd.nargs {
		fs.Usage()
		return nil, nil, fmt.Errorf("want %d argument(s) (%s), got %d", cmd.nargs, cmd.usage, len(pos))
	}
	if _, _, err := net.SplitHostPort(cl.addr); err != nil {
		return nil, nil, fmt.Errorf("--addr %q: want host:port", cl.addr)
	}
	cl.http = &http.Client{Timeout: cl.timeout}
	return cl, pos, nil
}

// localHTTPAddr is the address of the node on this host, as the node's own
// variables set it: RATEMESH_ADDR, else RATEMESH_BIND (0.0.0.0 and ::
// mean loopback here) and RATEMESH_HTTP_PORT, else 127.0.0.1:8081.
func localHTTPAddr(getenv func(string) string) string {
	if a := getenv("RATEMESH_ADDR"); a != "" {
		return a
	}
	host, port := getenv("RATEMESH_BIND"), getenv("RATEMESH_HTTP_PORT")
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	if port == "" {
		port = "8081"
	}
	return net.JoinHostPort(host, port)
}

// firstToken is the first of a comma-separated token list.
func firstToken(list string) string {
	tok, _, _ := strings.Cut(list, ",")
	return strings.TrimSpace(tok)
}

// apiError is a non-2xx answer of the node.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, http.StatusText(e.status), e.msg)
}

// call sends one request and decodes the JSON answer into out (which may be
// nil). bearer is the token to present ("" none).
func (cl *cliClient) call(method, path string, query url.Values, body any, bearer string, out any) error {
	u := "http://" + cl.addr + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cl.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := cl.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return &apiError{status: resp.StatusCode, msg: e.Error}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// show prints v as JSON with --json, else as the table table writes.
func (cl *cliClient) show(v any, table func(w io.Writer)) error {
	if cl.format != nil {
		return printFormat(cl.out, cl.format, v)
	}
	if cl.json {
		enc := json.NewEncoder(cl.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(cl.out, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}
