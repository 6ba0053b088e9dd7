package testkit

import (
	"os"
	"path/filepath"
	"testing"
)

// WriteTemp writes content to a file called name in a temporary directory
// of t (removed when t ends) and returns its path.
func WriteTemp(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
