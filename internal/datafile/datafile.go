// Package datafile keeps a node's counters in a file across restarts.
//
// A file is written whole, to a temporary file in the same directory that
// is synced and then renamed over the old one, so a crash leaves either
// the old file or the new one, never a mix. Its layout:
//
//	magic    "ratemesh counters\n" (18 bytes)
//	version  uint16be
//	cluster  uint16be length + bytes: whose counters these are
//	entries  msgpack stream of bucket.Entry, then msgpack nil (codec.go)
//	count    uint64be entries written
//	crc      uint32be CRC-32C of everything before it
//
// Load refuses, with a typed error, a file that is missing, truncated,
// corrupt, of another version or of another cluster; it never returns a
// part of a file as if it were all of it.
package datafile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/ratemesh/ratemesh/bucket"
)

// Version is the file format this package writes and reads.
const Version = 1

const magic = "ratemesh counters\n"

// Name is the file's name inside a data directory.
const Name = "counters.rmc"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrForeign says the file is not this cluster's or not this version's.
var ErrForeign = errors.New("datafile: file of another cluster or version")

// ErrCorrupt says the file is truncated, damaged or not a counters file.
var ErrCorrupt = errors.New("datafile: file is corrupt")

// Error is a Load failure: the file's path and why. It wraps ErrCorrupt,
// ErrForeign, or the filesystem's error (fs.ErrNotExist when missing).
type Error struct {
	Path   string
	Reason string
	Err    error
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Path, e.Reason) }
func (e *Error) Unwrap() error { return e.Err }

// Save writes entries to path atomically, labelled with cluster. It
// returns the file's size.
func Save(path, cluster string, entries []bucket.Entry) (int64, error) {
	if len(cluster) > 1<<16-1 {
		return 0, fmt.Errorf("datafile: cluster label of %d bytes", len(cluster))
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name()) // after a successful rename: nothing there
	size, err := write(tmp, cluster, entries)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		return 0, fmt.Errorf("datafile: writing %s: %w", path, err)
	}
	return size, nil
}

// syncDir makes the rename itself durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func write(f io.Writer, cluster string, entries []bucket.Entry) (int64, error) {
	crc := crc32.New(castagnoli)
	cw := &countWriter{w: io.MultiWriter(f, crc)}
	bw := bufio.NewWriterSize(cw, 1<<16)
	var head []byte
	head = append(head, magic...)
	head = binary.BigEndian.AppendUint16(head, Version)
	head = binary.BigEndian.AppendUint16(head, uint16(len(cluster)))
	head = append(head, cluster...)
	bw.Write(head)
	for i := range entries {
		bw.Write(appendEntry(bw.AvailableBuffer(), &entries[i]))
	}
	bw.WriteByte(codeNil)
	bw.Write(binary.BigEndian.AppendUint64(nil, uint64(len(entries))))
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	if _, err := f.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32())); err != nil {
		return 0, err
	}
	return cw.n + 4, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Load reads the entries of the file at path, which must be labelled
// cluster. Counters that do not validate make the whole file corrupt.
func Load(path, cluster string) ([]bucket.Entry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Path: path, Reason: "cannot read: " + err.Error(), Err: err}
	}
	return decode(path, cluster, b)
}

func decode(path, cluster string, b []byte) ([]bucket.Entry, error) {
	corrupt := func(why string) error { return &Error{Path: path, Reason: why, Err: ErrCorrupt} }
	if len(b) < len(magic)+4+12 || string(b[:len(magic)]) != magic {
		return nil, corrupt("not a ratemesh counters file")
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, corrupt("checksum mismatch (truncated or damaged)")
	}
	r := body[len(magic):]
	if v := binary.BigEndian.Uint16(r); v != Version {
		return nil, &Error{Path: path, Reason: fmt.Sprintf("format version %d, this node reads %d", v, Version), Err: ErrForeign}
	}
	n := int(binary.BigEndian.Uint16(r[2:]))
	if len(r) < 4+n+8 {
		return nil, corrupt("header runs past the end")
	}
	if got := string(r[4 : 4+n]); got != cluster {
		return nil, &Error{Path: path, Reason: "written by another cluster (another secret)", Err: ErrForeign}
	}
	want := binary.BigEndian.Uint64(r[len(r)-8:])
	entries, err := decodeEntries(r[4+n:len(r)-8], want)
	if err != nil {
		return nil, corrupt(err.Error())
	}
	return entries, nil
}

func decodeEntries(b []byte, want uint64) ([]bucket.Entry, error) {
	r := &reader{b: b, scopes: make(map[string]string)}
	// Every entry takes at least 3 bytes, so a damaged count cannot make
	// this allocate more than the file's size warrants.
	out := make([]bucket.Entry, 0, min(want, uint64(len(b)/3)))
	for {
		e, ok, err := r.entry()
		if err != nil {
			return nil, fmt.Errorf("entry %d: %v", len(out)+1, err)
		}
		if !ok {
			break
		}
		for i := range e.Counters {
			if err := e.Counters[i].Counter.Validate(); err != nil {
				return nil, fmt.Errorf("entry %d (key %.40q): %v", len(out)+1, e.Key, err)
			}
		}
		out = append(out, e)
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the last entry", len(r.b))
	}
	if uint64(len(out)) != want {
		return nil, fmt.Errorf("%d entries, the trailer says %d", len(out), want)
	}
	return out, nil
}
