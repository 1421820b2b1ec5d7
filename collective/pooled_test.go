package collective_test

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
)

// An Allreduce of a float64 Sum long enough to be combined on the rank's pool
// leaves the same bits on every rank, with every algorithm: rounding depends on
// the order of the sums, which the algorithm fixes, never on the pool.
func TestPooledAllreduceAgrees(t *testing.T) {
	const np, n = 2, 1<<21 + 5 // 16 MiB: the ring's blocks and the halving's halves are 8 MiB too
	forEachAlg(t, "allreduce", func(t *testing.T, alg string) {
		runAlg(t, "allreduce", alg, np, n, func(c *comm.Comm) error {
			r := rand.New(rand.NewPCG(uint64(c.Rank()), 7))
			v := make([]float64, n)
			for i := range v {
				v[i] = r.NormFloat64() * float64(1+i%1000)
			}
			if err := collective.Allreduce(bg, c, v, v, collective.Sum[float64]()); err != nil {
				return err
			}
			h := fnv.New64a()
			h.Write(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 8*n))
			all := make([]uint64, np)
			if err := collective.Allgather(bg, c, []uint64{h.Sum64()}, all); err != nil {
				return err
			}
			if slices.Min(all) != slices.Max(all) {
				return fmt.Errorf("rank %d: the ranks' results differ (hashes %x)", c.Rank(), all)
			}
			return nil
		})
	})
}
