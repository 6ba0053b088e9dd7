package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// addrFile is --addr-file: where the process's nodes listen, as JSON, so
// that a script that starts nodes on port 0 reads their addresses instead
// of scraping logs. The file appears, whole, once every node has bound its
// listeners and joined, and is removed when the nodes have stopped. A nil
// *addrFile (no --addr-file) does nothing.
type addrFile struct {
	path      string
	published bool
}

// addrDoc is the file's content.
type addrDoc struct {
	// PID lets a reader tell the file of a running process from one left
	// behind by a process that was killed.
	PID   int        `json:"pid"`
	Nodes []addrNode `json:"nodes"`
}

// addrNode is one node of the process: its name and the host:port of its
// HTTP API, gossip and RPC (the addresses peers use, as Node reports them).
type addrNode struct {
	Name   string `json:"name"`
	HTTP   string `json:"http"`
	Gossip string `json:"gossip"`
	RPC    string `json:"rpc"`
	GRPC   string `json:"grpc,omitempty"` // the rate limit service, with --rls-config
}

// addrFileError is a failure to prepare, write or remove --addr-file.
type addrFileError struct {
	Path string
	Err  error
}

// Error names the flag and the path.
func (e *addrFileError) Error() string {
	return fmt.Sprintf("--addr-file %q: %v", e.Path, e.Err)
}

// Unwrap returns the cause.
func (e *addrFileError) Unwrap() error { return e.Err }

// newAddrFile checks, before any node starts, that path can be written:
// its directory exists and takes a new file, and path is not a directory.
// An empty path means no file.
func newAddrFile(path string) (*addrFile, error) {
	if path == "" {
		return nil, nil
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, &addrFileError{path, errors.New("is a directory")}
	}
	// The probe is the same kind of file publish renames into place, so a
	// directory that takes it takes the real one.
	f, err := createTemp(path)
	if err != nil {
		return nil, &addrFileError{path, err}
	}
	f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return nil, &addrFileError{path, err}
	}
	return &addrFile{path: path}, nil
}

// createTemp creates a hidden temporary file next to path: a rename within
// one directory replaces path atomically, so a reader never sees half a
// file.
func createTemp(path string) (*os.File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	return os.CreateTemp(dir, "."+base+".*.tmp")
}

// publish writes the nodes' addresses to the file atomically.
func (a *addrFile) publish(pid int, nodes []addrNode) error {
	if a == nil {
		return nil
	}
	b, err := json.Marshal(addrDoc{PID: pid, Nodes: nodes})
	if err != nil {
		return &addrFileError{a.path, err}
	}
	if err := a.writeTemp(append(b, '\n')); err != nil {
		return &addrFileError{a.path, err}
	}
	a.published = true
	return nil
}

// writeTemp writes b to a temporary file and renames it over the path.
func (a *addrFile) writeTemp(b []byte) error {
	f, err := createTemp(a.path)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		// CreateTemp makes the file private; addresses are not secret,
		// and the script reading them may run as another user.
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), a.path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// remove deletes the file once the nodes it describes have stopped. A file
// this process never wrote is left alone.
func (a *addrFile) remove() error {
	if a == nil || !a.published {
		return nil
	}
	if err := os.Remove(a.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return &addrFileError{a.path, err}
	}
	return nil
}
