// Package yamlsyntax places a YAML syntax error on the line that broke the
// file. The YAML parser names, for most syntax errors, the line before
// (0-based) of the collection it was reading, not the line at fault: an
// unclosed "{" on line 4 reads "yaml: line 3: did not find expected ',' or
// '}'".
package yamlsyntax

import (
	"bytes"
	"strings"

	"go.yaml.in/yaml/v3"
)

// scanBudget bounds the bytes Line parses in all: past it, Line gives up.
const scanBudget = 8 << 20

// Line is the first line (1-based) whose end makes data stop being YAML:
// data up to the line before parses, up to it does not. 0 when no prefix
// fails, or finding it would parse more than 8 MiB in all.
func Line(data []byte) int {
	end, parsed := 0, 0
	for i, l := range bytes.SplitAfter(data, []byte("\n")) {
		end += len(l)
		if parsed += end; parsed > scanBudget {
			return 0
		}
		var n yaml.Node
		if yaml.Unmarshal(data[:end], &n) != nil {
			return i + 1
		}
	}
	return 0
}

// Message is the parser's error without its "yaml: " and "line N: ".
func Message(err error) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if _, after, ok := strings.Cut(rest, ": "); ok {
			return after
		}
	}
	return msg
}
