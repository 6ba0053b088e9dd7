package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/ratemesh/ratemesh/demo"
	"github.com/ratemesh/ratemesh/httpapi"
)

// reloadOptions say how often the node looks at its files for changes.
type reloadOptions struct {
	interval time.Duration
}

// register adds --reload-interval.
func (r *reloadOptions) register(e *envFlags) {
	e.Duration(&r.interval, "reload-interval", "RATEMESH_RELOAD_INTERVAL", 5*time.Second, "how often --policy, --api-token-file and the TLS files are read for changes (a change is applied once two reads in a row agree); SIGHUP reloads them at once; 0: on SIGHUP only")
}

// preflight refuses a negative interval.
func (r *reloadOptions) preflight() error {
	if r.interval < 0 {
		return fmt.Errorf("--reload-interval %v: want 0 (SIGHUP only) or a positive duration", r.interval)
	}
	return nil
}

// watched is a set of files applied together (a policy file; a
// certificate and its key). Its apply reads them itself; the reloader
// only hashes their content to see a change.
type watched struct {
	flag  string
	paths []string
	apply func() error

	applied [sha256.Size]byte // content last applied or refused
	pending [sha256.Size]byte // content of the last poll, not applied yet
	unread  bool              // the files could not be read: logged once
}

// reloader re-reads the node's files on SIGHUP and every interval, and
// applies those whose content changed. A file that is missing or bad
// leaves what it configured as it was: the node keeps serving with the
// last good version, and says so once per change.
type reloader struct {
	log      *slog.Logger
	interval time.Duration
	files    []*watched

	mu    sync.Mutex
	demos []*demo.Demo // every node's demo, for --policy
}

// newReloader watches the files of o. The content they have now counts as
// applied: the nodes about to start read it themselves.
func newReloader(o *options, log *slog.Logger) *reloader {
	r := &reloader{log: log, interval: o.http.reload.interval}
	h := &o.http
	if h.policyFile != "" {
		r.watch("--policy", func() error { return r.applyPolicy(h) }, h.policyFile)
	}
	if a := &h.auth; a.tokenFile != "" {
		r.watch("--api-token-file", a.reloadFile, a.tokenFile)
	}
	h.hub = r
	return r
}

// watch adds a set of files and takes their content now as applied.
func (r *reloader) watch(flag string, apply func() error, paths ...string) {
	w := &watched{flag: flag, paths: paths, apply: apply}
	if sum, err := w.sum(); err == nil {
		w.applied, w.pending = sum, sum
	}
	r.files = append(r.files, w)
}

// sum hashes the content of the files.
func (w *watched) sum() ([sha256.Size]byte, error) {
	h := sha256.New()
	for _, p := range w.paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return [sha256.Size]byte{}, err
		}
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	return [sha256.Size]byte(h.Sum(nil)), nil
}

// run polls every interval and reloads at once on hup, until ctx ends.
func (r *reloader) run(ctx context.Context, hup <-chan os.Signal) {
	var tick <-chan time.Time
	if r.interval > 0 {
		t := time.NewTicker(r.interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			r.poll(false)
		case <-hup:
			r.log.Info("SIGHUP: reloading", "files", len(r.files))
			r.poll(true)
		}
	}
}

// poll applies each set of files that changed. Unless forced (SIGHUP), a
// change is applied once two polls in a row read the same content, so
// that a file caught half-written is not applied.
func (r *reloader) poll(force bool) {
	for _, w := range r.files {
		sum, err := w.sum()
		if err != nil {
			if !w.unread {
				r.log.Error("reload: cannot read the file; keeping the last good version", "flag", w.flag, "err", err)
				w.unread = true
			}
			continue
		}
		if w.unread {
			r.log.Info("reload: the file is readable again", "flag", w.flag, "file", w.paths[0])
			w.unread = false
		}
		stable := sum == w.pending
		w.pending = sum
		if !force && (sum == w.applied || !stable) {
			continue
		}
		w.applied = sum
		if err := w.apply(); err != nil {
			r.log.Error("reload refused; keeping the last good version", "flag", w.flag, "file", w.paths[0], "err", err)
			continue
		}
		r.log.Info("reloaded", "flag", w.flag, "file", w.paths[0])
	}
}

// addDemo registers a node's demo for policy reloads; a nil reloader
// (a node built without serve) ignores it.
func (r *reloader) addDemo(d *demo.Demo) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.demos = append(r.demos, d)
	r.mu.Unlock()
}

// applyPolicy loads the policy file and sets it on every node's demo.
// The nodes' demos compile one policy alike, so one that refuses it is
// the first, and then none has changed.
func (r *reloader) applyPolicy(h *httpOptions) error {
	p, err := policyOf(h)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.demos {
		if err := d.SetPolicy(p); err != nil {
			return err
		}
	}
	return nil
}

// policyOf is the demo's policy: the tutorial's, with the policy file
// merged in, and every limit a dry run under --shadow.
func policyOf(h *httpOptions) (httpapi.Policy, error) {
	p := demo.Policy()
	if h.policyFile != "" {
		var err error
		if p, err = httpapi.LoadPolicy(h.policyFile, p); err != nil {
			return p, policyFileError(err)
		}
	}
	p.Shadow = p.Shadow || h.shadow
	return p, nil
}

// policyFileError names the flag in an error reading the policy file; an
// error in its content names the file and line already.
func policyFileError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("--policy: %w", err)
	}
	return err
}
