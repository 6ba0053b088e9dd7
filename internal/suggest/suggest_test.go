package suggest

import "testing"

func TestNearest(t *testing.T) {
	names := []string{"GET", "POST", "members", "owner"}
	for word, want := range map[string]string{
		"GTE": "GET", "post": "POST", "membres": "members", "ownr": "owner", "delete": "", "": "",
	} {
		if got := Nearest(word, names); got != want {
			t.Errorf("Nearest(%q) = %q, want %q", word, got, want)
		}
	}
}
