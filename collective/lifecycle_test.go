package collective_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
)

// heapAfterGC is the live heap once garbage is collected.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestCommFreeReleasesState creates and frees 100,000 communicators, with
// collectives on some of them (hierarchical ones, which cache node
// communicators on theirs): what the collectives keep per communicator dies
// with it, so the heap stays flat.
func TestCommFreeReleasesState(t *testing.T) {
	collective.SetForced(t, "barrier", collective.AlgHierarchical)
	// The package's recorder keeps every communicator a choice was made on.
	collective.OnChoose(func(*comm.Comm, string, int, bool, string) {})
	defer collective.OnChoose(ran.note)
	w := commtest.NewWorldOnNodes(t, []string{"a", "a", "b"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const n = 100_000
	cycle := func(c *comm.Comm, count int) error {
		for i := range count {
			d, err := c.Dup(ctx)
			if err != nil {
				return err
			}
			if i%100 == 0 {
				if err := collective.Barrier(ctx, d); err != nil {
					return err
				}
				if _, err := collective.Ibarrier(ctx, d).Wait(); err != nil {
					return err
				}
			}
			if err := d.Close(); err != nil {
				return err
			}
		}
		return nil
	}
	w.Run(func(c *comm.Comm) error { return cycle(c, 1000) }) // warm up pools and caches
	before := heapAfterGC()
	w.Run(func(c *comm.Comm) error { return cycle(c, n) })
	after := heapAfterGC()
	grew := int64(after) - int64(before)
	t.Logf("heap after %d communicators: %d KiB before, %d KiB after (%+d KiB)", n, before>>10, after>>10, grew>>10)
	if grew > 2<<20 {
		t.Errorf("heap grew by %d KiB over %d communicators created and freed: per-communicator state outlives them", grew>>10, n)
	}
}
