// Package docblocks reads the fenced code blocks of the project's Markdown
// pages, so that tests can run the commands a page shows and compare what
// they print with what the page says, or check the names a block uses
// against the code. Every test of a page's blocks reads them here, so
// that the pages are read one way.
package docblocks

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Block is a fenced code block of a page.
type Block struct {
	Lang    string // the fence's language ("sh", "json", "console"; "" for none)
	Text    string // what the fence holds, without the indentation of its first line
	Heading string // the last heading above the block ("" before the first)
	Before  string // the page's text between the previous block (or the top) and this one
}

var (
	// fence matches a fenced block, indented (in a list item) or not: its
	// language and its text.
	fence = regexp.MustCompile("(?ms)^ *```([a-z]*)\n(.*?)^ *```")
	// heading matches a Markdown heading and its title.
	heading = regexp.MustCompile(`(?m)^#+ (.*)$`)
)

// Load reads the blocks of page, a path below root, failing the test if
// the page cannot be read.
func Load(t testing.TB, root, page string) []Block {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, page))
	if err != nil {
		t.Fatal(err)
	}
	return Parse(string(b))
}

// Parse lists the fenced blocks of a page's text in order.
func Parse(text string) []Block {
	var blocks []Block
	title, end := "", 0
	for _, m := range fence.FindAllStringSubmatchIndex(text, -1) {
		before := text[end:m[0]]
		if h := heading.FindAllStringSubmatch(before, -1); h != nil {
			title = h[len(h)-1][1]
		}
		blocks = append(blocks, Block{
			Lang:    text[m[2]:m[3]],
			Text:    Dedent(text[m[4]:m[5]]),
			Heading: title,
			Before:  before,
		})
		end = m[1]
	}
	return blocks
}

// Under returns the blocks of language lang (any, if "") whose heading is
// title.
func Under(blocks []Block, title, lang string) []Block {
	var out []Block
	for _, b := range blocks {
		if b.Heading == title && (lang == "" || b.Lang == lang) {
			out = append(out, b)
		}
	}
	return out
}

// Dedent removes the indentation of a block's first line from each line,
// as a list item's code block is indented in the page.
func Dedent(text string) string {
	indent := strings.Repeat(" ", len(text)-len(strings.TrimLeft(text, " ")))
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, indent)
	}
	return strings.Join(lines, "\n")
}

// Session is a command of a terminal session a page shows, and what the
// page says it prints.
type Session struct {
	Command, Output string
}

// Sessions splits a block that shows a terminal session: each command
// follows "$ ", continues on the lines that end in a backslash, and prints
// the lines up to the next "$ ". A block that does not start with "$ "
// holds none.
func Sessions(text string) []Session {
	if !strings.HasPrefix(text, "$ ") {
		return nil
	}
	var out []Session
	var cur *Session
	continued := false
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		switch {
		case continued:
			cur.Command += "\n" + line
		case strings.HasPrefix(line, "$ "):
			out = append(out, Session{Command: strings.TrimPrefix(line, "$ ")})
			cur = &out[len(out)-1]
		default:
			cur.Output += line + "\n"
			continue
		}
		continued = strings.HasSuffix(line, "\\")
	}
	return out
}

// Commands lists the commands of an sh block: lines joined where one
// ends in a backslash, each without its trailing "# " comment, blank and
// comment lines left out.
func Commands(block string) []string {
	var out []string
	for _, line := range strings.Split(strings.ReplaceAll(block, "\\\n", " "), "\n") {
		if i := strings.Index(line, " # "); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// Words splits a command line into its words as a shell does for
// quotes (no expansion): 'a b' and "a b" are one word, without the quotes.
func Words(line string) []string {
	var words []string
	var cur strings.Builder
	quote, in := rune(0), false
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
			}
			in = false
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}
