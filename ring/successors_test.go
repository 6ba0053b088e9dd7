package ring

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/buraksezer/consistent"
)

// checkSuccessors verifies Successors(k, len(members)) for every key: the
// owner first, distinct members, and member i+1 the owner of k in a ring
// built with New from the members minus the first i+1.
func checkSuccessors(t *testing.T, r *Ring, ks []string) {
	t.Helper()
	ms := r.Members()
	rings := map[string]*Ring{} // by sorted excluded names
	for _, k := range ks {
		s := r.Successors(k, len(ms))
		if len(s) != len(ms) {
			t.Fatalf("Successors(%q, %d) has %d members", k, len(ms), len(s))
		}
		if owner, _ := r.Owner(k); s[0] != owner {
			t.Fatalf("Successors(%q)[0] = %v, Owner %v", k, s[0], owner)
		}
		var gone []string
		for i := 1; i < len(s); i++ {
			gone = append(gone, s[i-1].Name)
			id := strings.Join(slices.Sorted(slices.Values(gone)), ",")
			sub, ok := rings[id]
			if !ok {
				sub = New(without(ms, gone...), r.Config())
				rings[id] = sub
			}
			want, _ := sub.Owner(k)
			if s[i] != want {
				t.Fatalf("Successors(%q)[%d] = %v; without %v the owner is %v", k, i, s[i], gone, want)
			}
			if slices.Contains(gone, s[i].Name) {
				t.Fatalf("Successors(%q) repeats %s: %v", k, s[i].Name, s)
			}
		}
	}
}

func TestSuccessors(t *testing.T) {
	ks := keys(300)
	for _, n := range []int{2, 3, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			checkSuccessors(t, New(members(n), Config{}), ks)
		})
	}
	// The library's defaults cap members more tightly relative to their
	// arcs, so failover order departs from "next clockwise" more often.
	t.Run("271,20", func(t *testing.T) {
		checkSuccessors(t, New(members(5), Config{271, 20, 1.25}), ks)
	})
}

func TestSuccessorsLengths(t *testing.T) {
	r := New(members(4), Config{})
	owner, _ := r.Owner("k")
	for _, tc := range []struct{ n, want int }{{-1, 0}, {0, 0}, {1, 1}, {2, 2}, {4, 4}, {100, 4}} {
		s := r.Successors("k", tc.n)
		if len(s) != tc.want || (tc.want == 0) != (s == nil) {
			t.Errorf("Successors(k, %d) = %v, want %d members", tc.n, s, tc.want)
		}
		if len(s) > 0 && s[0] != owner {
			t.Errorf("Successors(k, %d)[0] = %v, want owner %v", tc.n, s[0], owner)
		}
	}
}

// TestSuccessorsSameOnEveryNode builds the ring from differently ordered
// member lists, as different nodes would, and compares failover orders.
func TestSuccessorsSameOnEveryNode(t *testing.T) {
	ms := members(5)
	rev := slices.Clone(ms)
	slices.Reverse(rev)
	a, b := New(ms, Config{}), New(rev, Config{})
	for _, k := range keys(100) {
		if sa, sb := a.Successors(k, 5), b.Successors(k, 5); !slices.Equal(sa, sb) {
			t.Fatalf("Successors(%q): %v vs %v", k, sa, sb)
		}
	}
}

// TestSuccessorsCacheFull checks that a Ring whose failover cache is full
// still answers, the same, without growing the cache.
func TestSuccessorsCacheFull(t *testing.T) {
	full := New(members(5), Config{})
	full.maxCache = 1
	free := New(members(5), Config{})
	for _, k := range keys(10) {
		if a, b := full.Successors(k, 5), free.Successors(k, 5); !slices.Equal(a, b) {
			t.Fatalf("Successors(%q): %v with a full cache, %v without", k, a, b)
		}
	}
	if len(full.without) != 1 {
		t.Fatalf("cache holds %d tables, cap 1", len(full.without))
	}
}

// TestConcurrentUse runs lookups on one Ring from several goroutines while
// Successors fills its cache; run with -race.
func TestConcurrentUse(t *testing.T) {
	ms := members(5)
	shared, ref := New(ms, Config{}), New(ms, Config{})
	ks := keys(200)
	want := make([][]Member, len(ks))
	for i, k := range ks {
		want[i] = ref.Successors(k, 3)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := range 4 {
		wg.Go(func() {
			for i := range ks {
				i := (i + g*50) % len(ks)
				if o, _ := shared.Owner(ks[i]); o != want[i][0] {
					errs <- fmt.Sprintf("Owner(%q) = %v", ks[i], o)
					return
				}
				if s := shared.Successors(ks[i], 3); !slices.Equal(s, want[i]) {
					errs <- fmt.Sprintf("Successors(%q) = %v, want %v", ks[i], s, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestOwnerDoesNotAllocate(t *testing.T) {
	r := New(members(3), Config{})
	ks := keys(64)
	i := 0
	if n := testing.AllocsPerRun(1000, func() {
		r.Owner(ks[i%len(ks)])
		i++
	}); n != 0 {
		t.Fatalf("Owner allocates %v times per call", n)
	}
}

var sinkMember Member

// BenchmarkOwner measures the hot-path lookup; the library's LocateKey on
// the same ring is the reference (it converts the key to a []byte and takes
// a read lock and a map lookup).
func BenchmarkOwner(b *testing.B) {
	ks := keys(4096)
	for _, n := range []int{3, 50} {
		r := New(members(n), Config{})
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				sinkMember, _ = r.Owner(ks[i&4095])
				i++
			}
		})
	}
	r := New(members(3), Config{})
	lms := make([]consistent.Member, 3)
	for i, m := range r.members {
		lms[i] = libMember{name: m.Name, idx: int32(i)}
	}
	c := r.Config()
	lib := consistent.New(lms, consistent.Config{Hasher: hasher{}, PartitionCount: c.PartitionCount,
		ReplicationFactor: c.ReplicationFactor, Load: c.Load})
	b.Run("members=3/library-LocateKey", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			sinkMember = r.members[lib.LocateKey([]byte(ks[i&4095])).(libMember).idx]
			i++
		}
	})
}

// BenchmarkSuccessors measures the failover lookup once its tables are
// built (the first call per failed member costs about one New).
func BenchmarkSuccessors(b *testing.B) {
	ks := keys(4096)
	r := New(members(10), Config{})
	for _, k := range ks {
		r.Successors(k, 2)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sinkMember = r.Successors(ks[i&4095], 2)[1]
		i++
	}
}

func BenchmarkNew(b *testing.B) {
	for _, n := range []int{3, 10, 50} {
		ms := members(n)
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				New(ms, Config{})
			}
		})
	}
}

// AppendSuccessors into a reused buffer allocates nothing (once the
// failover table it reads is built), and agrees with Successors.
func TestAppendSuccessorsAllocs(t *testing.T) {
	r := New([]Member{{Name: "a", Addr: "a:1"}, {Name: "b", Addr: "b:1"}, {Name: "c", Addr: "c:1"}}, Config{})
	buf := make([]Member, 0, 2)
	for i := range 100 {
		k := fmt.Sprint("key-", i)
		buf = r.AppendSuccessors(buf[:0], k, 2)
		if !slices.Equal(buf, r.Successors(k, 2)) {
			t.Fatalf("AppendSuccessors(%q) = %v, Successors %v", k, buf, r.Successors(k, 2))
		}
	}
	if a := testing.AllocsPerRun(100, func() { buf = r.AppendSuccessors(buf[:0], "key-7", 2) }); a != 0 {
		t.Fatalf("AppendSuccessors: %.0f allocations, want 0", a)
	}
}
