package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/template"
)

// --format prints a command's JSON (what --json prints) through a Go
// template, its fields named as in the JSON: scripts read answers with the
// node's own binary instead of jq. `json FILE` does the same for a JSON
// file (or stdin), such as --addr-file's.

// parseFormat compiles a --format template; a missing field is an error,
// not "<no value>".
func parseFormat(text string) (*template.Template, error) {
	t, err := template.New("--format").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("--format: %w", err)
	}
	return t, nil
}

// printFormat prints v, as its JSON would decode, through t.
func printFormat(w io.Writer, t *template.Template, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return printJSONFormat(w, t, b)
}

// printJSONFormat prints the JSON document data through t; numbers keep
// the digits they have (a pid is 4242, not 4.242e+03).
func printJSONFormat(w io.Writer, t *template.Template, data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if err := t.Execute(w, doc); err != nil {
		return fmt.Errorf("--format: %w", err)
	}
	return nil
}

// cmdJSON prints the JSON in a file ("-": stdin) through --format, or as
// it is, indented, without one.
func cmdJSON(cl *cliClient, args []string) error {
	var data []byte
	var err error
	if args[0] == "-" {
		data, err = io.ReadAll(io.LimitReader(cl.in, 64<<20))
	} else {
		data, err = os.ReadFile(args[0])
	}
	if err != nil {
		return err
	}
	if cl.format == nil {
		var out bytes.Buffer
		if err := json.Indent(&out, data, "", "  "); err != nil {
			return fmt.Errorf("%s: not JSON: %w", args[0], err)
		}
		_, err := cl.out.Write(append(bytes.TrimSpace(out.Bytes()), '\n'))
		return err
	}
	if err := printJSONFormat(cl.out, cl.format, data); err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	return nil
}
