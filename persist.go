package ratemesh

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ratemesh/ratemesh/internal/datafile"
)

// checkDataDir creates dir if needed and proves it writable, so that a
// node that could not keep its counters says so at New, not at shutdown.
func checkDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("ratemesh: data dir %q: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("ratemesh: data dir %q is not writable: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// dataLabel names the cluster in the data file, so that a node never
// loads counters written under another secret.
func dataLabel(secret string) string {
	sum := sha256.Sum256([]byte("ratemesh data file\x00" + secret))
	return hex.EncodeToString(sum[:8])
}

func (n *Node) dataPath() string { return filepath.Join(n.cfg.DataDir, datafile.Name) }

// loadCounters merges the data file's live counters into the store. A
// missing file is a first start; a bad one is logged and ignored whole.
// Keys this node does not own go to their owners with the first handoff.
// A node that joins a cluster keeps them apart until it knows, key by key,
// whether a peer continued its counts from replicas while it was away
// (cluster.Cluster.Restore): those are newer than the file.
func (n *Node) loadCounters() {
	entries, err := datafile.Load(n.dataPath(), dataLabel(n.cfg.Secret))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		n.cfg.Logger.Info("no counters file; starting empty", "path", n.dataPath())
		return
	case err != nil:
		n.cfg.Logger.Warn("counters file ignored", "err", err)
		return
	}
	if len(n.cfg.Seeds) > 0 {
		n.cl.Restore(n.cfg.Clock(), entries)
		n.cfg.Logger.Info("counters loaded; each key is checked against the peers' replicas when it is first used", "path", n.dataPath(), "keys", len(entries))
		return
	}
	if refused := n.store.Merge(n.cfg.Clock(), entries); refused > 0 {
		n.cfg.Logger.Warn("counters file holds more than the table's bounds: counters refused", "counters", refused)
	}
	n.cfg.Logger.Info("counters loaded", "path", n.dataPath(), "keys", len(entries), "live_keys", n.store.Len())
}

// saveCounters writes every live counter the store holds.
func (n *Node) saveCounters() error {
	start := time.Now()
	now := n.cfg.Clock()
	entries := append(n.store.Snapshot(now, nil), n.cl.Restored(now)...)
	size, err := datafile.Save(n.dataPath(), dataLabel(n.cfg.Secret), entries)
	if err != nil {
		n.cfg.Logger.Error("saving counters failed", "err", err)
		return err
	}
	n.cfg.Logger.Debug("counters saved", "keys", len(entries), "bytes", size, "took", time.Since(start))
	return nil
}
