package datafile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ratemesh/ratemesh/bucket"
)

func sampleEntries(n int) []bucket.Entry {
	lim := bucket.Limit{Amount: 100, Period: time.Minute}
	out := make([]bucket.Entry, n)
	for i := range out {
		out[i] = bucket.Entry{Key: fmt.Sprintf("user:%d", i), Counters: []bucket.CounterState{
			{Counter: bucket.Counter{Scope: "GET /products", Limit: lim}, Start: 1_700_000_000_000_000_000, Count: int64(i%100 + 1)},
			{Counter: bucket.Counter{Scope: "login", Limit: lim, Strategy: bucket.MovingWindow}, Hits: []int64{1, 2, 3}},
		}}
	}
	return out
}

func TestSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), Name)
	want := sampleEntries(1000)
	if _, err := Save(path, "c1", want); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("loaded %d entries differ from the %d saved", len(got), len(want))
	}
	if _, err := Save(path, "c1", nil); err != nil {
		t.Fatal(err)
	}
	if got, err := Load(path, "c1"); err != nil || len(got) != 0 {
		t.Fatalf("empty file: %d entries, %v", len(got), err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("%d files in the data dir, want only %s", len(ents), Name)
	}
}

// Every damaged or foreign file is refused whole, with an error naming
// the file and what is wrong.
func TestLoadRefuses(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if _, err := Save(good, "c1", sampleEntries(10)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(good)
	flipped := append([]byte(nil), b...)
	flipped[len(flipped)/2] ^= 0x40
	version := append([]byte(nil), b...)
	binary.BigEndian.PutUint16(version[len(magic):], Version+1)
	binary.BigEndian.PutUint32(version[len(version)-4:], crc32.Checksum(version[:len(version)-4], castagnoli))
	for _, tc := range []struct {
		name, cluster string
		data          []byte
		is            error
		reason        string
	}{
		{"truncated", "c1", b[:len(b)-9], ErrCorrupt, "checksum mismatch"},
		{"flipped", "c1", flipped, ErrCorrupt, "checksum mismatch"},
		{"garbage", "c1", []byte("GET / HTTP/1.1\r\n\r\n and more bytes"), ErrCorrupt, "not a ratemesh counters file"},
		{"empty", "c1", nil, ErrCorrupt, "not a ratemesh counters file"},
		{"other-cluster", "c2", b, ErrForeign, "another cluster"},
		{"other-version", "c1", version, ErrForeign, "format version 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			os.WriteFile(path, tc.data, 0o600)
			got, err := Load(path, tc.cluster)
			var fe *Error
			if got != nil || !errors.Is(err, tc.is) || !errors.As(err, &fe) || fe.Path != path || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("Load = %d entries, %v; want %v naming the file and %q", len(got), err, tc.is, tc.reason)
			}
		})
	}
	if _, err := Load(filepath.Join(dir, "missing"), "c1"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v, want fs.ErrNotExist", err)
	}
}

// A file whose checksum is right but whose counters are not valid (one
// written by hand, or by a buggy version) is refused whole.
func TestLoadRefusesInvalidCounters(t *testing.T) {
	path := filepath.Join(t.TempDir(), Name)
	bad := sampleEntries(3)
	bad[2].Counters[0].Counter.Limit.Amount = -5
	if _, err := Save(path, "c1", bad); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, "c1")
	if got != nil || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "entry 3") {
		t.Fatalf("Load = %d entries, %v; want ErrCorrupt naming entry 3", len(got), err)
	}
}

func TestSaveUnwritable(t *testing.T) {
	if _, err := Save(filepath.Join(t.TempDir(), "no", "such", Name), "c1", nil); err == nil {
		t.Fatal("Save into a missing directory succeeded")
	}
}

// FuzzLoad: no input makes decode panic, and what it accepts is whole.
func FuzzLoad(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, Name)
	Save(path, "c", sampleEntries(3))
	b, _ := os.ReadFile(path)
	f.Add(b)
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		got, err := decode("fuzz", "c", data)
		if err != nil && got != nil {
			t.Fatalf("%d entries returned with error %v", len(got), err)
		}
	})
}

// BenchmarkSave1M writes a million keys of two counters each, the size
// of a busy node, and reports the file's size.
func BenchmarkSave1M(b *testing.B) {
	entries := sampleEntries(1_000_000)
	path := filepath.Join(b.TempDir(), Name)
	var size int64
	for b.Loop() {
		var err error
		if size, err = Save(path, "c1", entries); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size)/(1<<20), "MiB")
}
