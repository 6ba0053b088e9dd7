package docblocks

import (
	"reflect"
	"testing"
)

const page = "# Title\n\nText.\n\n## First\n\n```sh\n# not a heading\necho a\n```\n```json\n{}\n```\n\n" +
	"- a list item:\n\n  ```yaml\n  a: 1\n    b: 2\n  ```\n\n## Second\n\n```console\n$ one \\\n  --flag\nout 1\nout 2\n$ two\n```\n"

// TestParse: blocks come in order with their language, their text
// dedented, the last heading above them (a comment in a block is none) and
// the text between them.
func TestParse(t *testing.T) {
	got := Parse(page)
	want := []Block{
		{Lang: "sh", Text: "# not a heading\necho a\n", Heading: "First", Before: "# Title\n\nText.\n\n## First\n\n"},
		{Lang: "json", Text: "{}\n", Heading: "First", Before: "\n"},
		{Lang: "yaml", Text: "a: 1\n  b: 2\n", Heading: "First", Before: "\n\n- a list item:\n\n"},
		{Lang: "console", Text: "$ one \\\n  --flag\nout 1\nout 2\n$ two\n", Heading: "Second", Before: "\n\n## Second\n\n"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Parse:\n%#v\nwant\n%#v", got, want)
	}
	if u := Under(got, "First", "json"); len(u) != 1 || u[0].Text != "{}\n" {
		t.Fatalf("Under(First, json) = %#v", u)
	}
}

// TestSessions: a command continues over backslashes and prints the lines
// up to the next "$ "; a block that does not start with "$ " holds none.
func TestSessions(t *testing.T) {
	got := Sessions("$ one \\\n  --flag\nout 1\nout 2\n$ two\n")
	want := []Session{{Command: "one \\\n  --flag", Output: "out 1\nout 2\n"}, {Command: "two"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Sessions:\n%#v\nwant\n%#v", got, want)
	}
	if s := Sessions("echo a\n$ b\n"); s != nil {
		t.Fatalf("a block that is not a session: %#v", s)
	}
}

// TestCommands: continued lines join, trailing comments and comment lines
// go; words keep what quotes hold together, without the quotes.
func TestCommands(t *testing.T) {
	got := Commands("# a comment\nA=1 go test \\\n  -run 'X|Y' .   # why\n\necho \"a b\"\n")
	want := []string{"A=1 go test    -run 'X|Y' .", `echo "a b"`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Commands = %q, want %q", got, want)
	}
	if w := Words(got[0]); !reflect.DeepEqual(w, []string{"A=1", "go", "test", "-run", "X|Y", "."}) {
		t.Fatalf("Words = %q", w)
	}
	if w := Words(`x --f='{.a}' "" b`); !reflect.DeepEqual(w, []string{"x", "--f={.a}", "", "b"}) {
		t.Fatalf("Words = %q", w)
	}
}
