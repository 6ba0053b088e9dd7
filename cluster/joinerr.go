package cluster

import (
	"errors"
	"strings"
)

// ErrSecretMismatch is returned (wrapped) by Join when a seed answered but
// the two could not read each other's gossip: their secrets differ, or
// only one of them has one. Retrying cannot help, so Join stops at once.
var ErrSecretMismatch = errors.New("the cluster secret differs from the seed's (or only one of them has a secret): give every node the same secret")

// secretMismatch reports whether err, from memberlist's Join, says that the
// seed's gossip could not be decrypted, or was encrypted when this node's
// is not, or the other way round.
func secretMismatch(err error) bool {
	if err == nil {
		return false
	}
	s := strings.ToLower(err.Error())
	for _, sign := range []string{
		"no installed keys could decrypt the message",
		"remote state is encrypted and encryption is not configured",
		"encryption is configured but remote state is not encrypted",
	} {
		if strings.Contains(s, sign) {
			return true
		}
	}
	return false
}

// oneLine is err's message on one line: memberlist lists its errors as
// "2 errors occurred:\n\t* a\n\t* b\n\n" and errors.Join puts a newline
// between errors; both become "a; b", so that a log line's value needs no
// escapes.
func oneLine(err error) string {
	if err == nil {
		return ""
	}
	var parts []string
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimPrefix(strings.TrimSpace(line), "* ")
		if line == "" || strings.HasSuffix(line, " error occurred:") || strings.HasSuffix(line, " errors occurred:") {
			continue
		}
		parts = append(parts, line)
	}
	return strings.Join(parts, "; ")
}

// oneLineError is an error whose message is on one line (oneLine), still
// wrapping the error it flattens.
type oneLineError struct{ err error }

func (e oneLineError) Error() string { return oneLine(e.err) }
func (e oneLineError) Unwrap() error { return e.err }

// flat is err with its message on one line; nil stays nil.
func flat(err error) error {
	if err == nil {
		return nil
	}
	return oneLineError{err}
}
