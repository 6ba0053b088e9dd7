package rls

import (
	"context"
	"log/slog"
	"time"
)

// Reloader keeps a Service's config in step with its files: a changed
// file is parsed and, if valid, put in force; a bad one is logged and the
// config in force stays.
type Reloader struct {
	path    string
	svc     *Service
	log     *slog.Logger
	seen    [32]byte // digest of the files last read, valid or not
	lastErr string   // the last failure logged, so that it is logged once
}

// NewReloader watches path (as LoadPath reads it) for svc, whose config
// is taken to be the one path holds now.
func NewReloader(svc *Service, path string, log *slog.Logger) *Reloader {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reloader{path: path, svc: svc, log: log, seen: svc.Config().digest}
}

// Check reads the files and, when they differ from the last ones read,
// loads them. It reports whether a new config was put in force, and the
// error that kept one out.
func (r *Reloader) Check() (bool, error) {
	files, err := ReadPath(r.path)
	if err != nil {
		r.refused(err)
		return false, err
	}
	d := digest(files)
	if d == r.seen {
		return false, nil
	}
	r.seen, r.lastErr = d, ""
	cfg, err := Parse(files...)
	if err != nil {
		r.refused(err)
		return false, err
	}
	r.svc.SetConfig(cfg)
	r.svc.metrics.load(true)
	r.log.Info("rls: config reloaded", "path", r.path, "files", len(files), "limits", len(cfg.Rules()))
	return true, nil
}

// refused logs a config kept out, once until the files change.
func (r *Reloader) refused(err error) {
	if err.Error() == r.lastErr {
		return
	}
	r.lastErr = err.Error()
	r.svc.metrics.load(false)
	r.log.Error("rls: new config refused; the previous one stays in force", "path", r.path, "err", err)
}

// Run calls Check every interval until ctx ends.
func (r *Reloader) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Check()
		}
	}
}
