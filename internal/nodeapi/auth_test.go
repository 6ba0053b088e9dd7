package nodeapi

import (
	"errors"
	"reflect"
	"testing"
)

func TestTokensCheckAndReplace(t *testing.T) {
	const a, b, c = "alpha-0123456789abc", "bravo-0123456789abc", "charlie-0123456789ab"
	tok, err := NewTokens([]string{a, b})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		header string
		want   AuthResult
	}{
		{"", AuthMissing}, {"Bearer", AuthMissing}, {"Bearer ", AuthMissing}, {"Basic " + a, AuthMissing},
		{"Bearer " + a, AuthOK}, {"bearer " + b, AuthOK}, {"Bearer " + c, AuthInvalid},
		{"Bearer " + a + "x", AuthInvalid}, {"Bearer " + a[:10], AuthInvalid},
	} {
		if got := tok.Check(tc.header); got != tc.want {
			t.Errorf("Check(%q) = %v, want %v", tc.header, got, tc.want)
		}
	}
	if err := tok.Replace([]string{c, "short"}); !errors.Is(err, ErrTokenTooShort) || err.Error() != "token 2 of 2: nodeapi: token shorter than 16 characters" {
		t.Fatalf("Replace with a short token: %v", err)
	}
	if err := tok.Replace(nil); err == nil {
		t.Fatal("Replace with no tokens: no error")
	}
	if tok.Len() != 2 || tok.Check("Bearer "+a) != AuthOK {
		t.Fatal("a refused Replace changed the set")
	}
	if err := tok.Replace([]string{c}); err != nil {
		t.Fatal(err)
	}
	if tok.Check("Bearer "+a) != AuthInvalid || tok.Check("Bearer "+c) != AuthOK || tok.Len() != 1 {
		t.Fatal("Replace did not swap the set")
	}
}

func TestParseTokens(t *testing.T) {
	got := ParseTokens(" a , b,,\n# comment, not a token\n  c\r\n\n d,e ")
	if want := []string{"a", "b", "c", "d", "e"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseTokens = %q, want %q", got, want)
	}
}

// BenchmarkTokensCheck is the cost the token adds to a guarded request:
// one hash and a compare per token of the set.
func BenchmarkTokensCheck(b *testing.B) {
	tok, err := NewTokens([]string{"alpha-0123456789abcdef", "bravo-0123456789abcdef"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if tok.Check("Bearer bravo-0123456789abcdef") != AuthOK {
			b.Fatal("refused")
		}
	}
}
