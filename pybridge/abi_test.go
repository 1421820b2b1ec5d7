package main

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"unsafe"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
)

// The C ABI's buffer functions are called here as Python calls them, with
// buffers that are too small for the message their counts describe: each
// must fail with the right error class and leave every byte outside the
// buffer it was given untouched.

const (
	guardLen = 64
	sentinel = 0xA5
)

// guarded is a buffer of n usable bytes between two guard regions.
type guarded struct{ mem []byte }

func newGuarded(n int) *guarded {
	g := &guarded{mem: make([]byte, guardLen+n+guardLen)}
	for i := range g.mem {
		g.mem[i] = sentinel
	}
	for i := range n {
		g.mem[guardLen+i] = byte(i) // the payload, not the sentinel
	}
	return g
}

func (g *guarded) ptr() unsafe.Pointer { return unsafe.Pointer(&g.mem[guardLen]) }
func (g *guarded) size() int64         { return int64(len(g.mem) - 2*guardLen) }

// intact reports whether both guard regions still hold the sentinel.
func (g *guarded) intact() bool {
	n := len(g.mem)
	clean := bytes.Repeat([]byte{sentinel}, guardLen)
	return bytes.Equal(g.mem[:guardLen], clean) && bytes.Equal(g.mem[n-guardLen:], clean)
}

// int64s is a C array of int64 for counts and displacements.
func int64s(v ...int64) unsafe.Pointer {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Pointer(&v[0])
}

// buffers hands out guarded buffers and checks them all afterwards.
type buffers []*guarded

func (bs *buffers) of(n int64) *guarded {
	g := newGuarded(int(n))
	*bs = append(*bs, g)
	return g
}

func (bs buffers) intact() bool {
	for _, g := range bs {
		if !g.intact() {
			return false
		}
	}
	return true
}

// each is n int64s of value v.
func each(n, v int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// abiCase calls one exported function on rank me of a size-p communicator h
// with buffers from b, one of them too small for the message the counts
// describe (16 bytes per rank) or counts that do not describe the buffers.
type abiCase struct {
	name string
	call func(b *buffers, h, me, p int64) int64
	want int // MPI error class
}

var shortBufferCases = []abiCase{
	{"bcast", func(b *buffers, h, me, p int64) int64 {
		r := b.of(8)
		return pm_bcast(h, 0, r.ptr(), r.size(), 16, nil)
	}, errTruncate},
	{"allgather-recv", func(b *buffers, h, me, p int64) int64 {
		s, r := b.of(16), b.of(16*p-1)
		return pm_gather(h, 0, s.ptr(), s.size(), 16, r.ptr(), r.size(), 1, nil)
	}, errTruncate},
	{"allgather-send", func(b *buffers, h, me, p int64) int64 {
		s, r := b.of(8), b.of(16*p)
		return pm_gather(h, 0, s.ptr(), s.size(), 16, r.ptr(), r.size(), 1, nil)
	}, errBuffer},
	{"allgather-in-place", func(b *buffers, h, me, p int64) int64 {
		r := b.of(16*p - 1)
		return pm_gather(h, 0, nil, 0, 16, r.ptr(), r.size(), 1, nil)
	}, errTruncate},
	{"scatter-recv", func(b *buffers, h, me, p int64) int64 {
		s, r := b.of(16*p), b.of(8)
		return pm_scatter(h, 0, s.ptr(), s.size(), r.ptr(), r.size(), 16, nil)
	}, errTruncate},
	{"alltoall-recv", func(b *buffers, h, me, p int64) int64 {
		s, r := b.of(16*p), b.of(16*p-8)
		return pm_alltoall(h, s.ptr(), s.size(), r.ptr(), r.size(), 16, nil)
	}, errTruncate},
	{"alltoall-send", func(b *buffers, h, me, p int64) int64 {
		s, r := b.of(16*p-8), b.of(16*p)
		return pm_alltoall(h, s.ptr(), s.size(), r.ptr(), r.size(), 16, nil)
	}, errBuffer},
	{"allgatherv-past-the-end", func(b *buffers, h, me, p int64) int64 {
		s, r := b.of(16), b.of(16*p)
		ds := make([]int64, p)
		for i := range ds {
			ds[i] = int64(i) * 16
		}
		ds[p-1]++ // the last block runs one byte past the buffer
		return pm_gatherv(h, 0, s.ptr(), s.size(), 16, r.ptr(), r.size(), int64s(each(p, 16)...), int64s(ds...), p, 1, nil)
	}, errTruncate},
	{"allgatherv-few-counts", func(b *buffers, h, me, p int64) int64 {
		s, r := b.of(16), b.of(16*p)
		return pm_gatherv(h, 0, s.ptr(), s.size(), 16, r.ptr(), r.size(), int64s(16), int64s(0), 1+p, 1, nil)
	}, errCount},
	{"allgatherv-negative", func(b *buffers, h, me, p int64) int64 {
		s, r := b.of(16), b.of(16*p)
		return pm_gatherv(h, 0, s.ptr(), s.size(), 16, r.ptr(), r.size(), int64s(each(p, 16)...), int64s(each(p, -16)...), p, 1, nil)
	}, errCount},
	{"scatterv-recv", func(b *buffers, h, me, p int64) int64 {
		s, r := b.of(16*p), b.of(8)
		return pm_scatterv(h, 0, s.ptr(), s.size(), int64s(each(p, 16)...), int64s(each(p, 0)...), p, r.ptr(), r.size(), 16, nil)
	}, errTruncate},
	{"alltoallv-recv", func(b *buffers, h, me, p int64) int64 {
		s, r := b.of(16), b.of(15)
		return pm_alltoallv(h, s.ptr(), s.size(), int64s(each(p, 16)...), int64s(each(p, 0)...), r.ptr(), r.size(),
			int64s(each(p, 16)...), int64s(each(p, 0)...), p, nil)
	}, errTruncate},
	{"alltoallv-send", func(b *buffers, h, me, p int64) int64 {
		s, r := b.of(15), b.of(16)
		return pm_alltoallv(h, s.ptr(), s.size(), int64s(each(p, 16)...), int64s(each(p, 0)...), r.ptr(), r.size(),
			int64s(each(p, 16)...), int64s(each(p, 0)...), p, nil)
	}, errBuffer},
	{"world-ranks", func(b *buffers, h, me, p int64) int64 {
		r := b.of(8*p - 8)
		return pm_comm_world_ranks(h, r.ptr(), p-1)
	}, errTruncate},
	{"gather-obj-lens", func(b *buffers, h, me, p int64) int64 {
		s, r := b.of(8), b.of(8*p-8)
		var blob int64
		return pm_gather_obj(h, 0, 1, s.ptr(), s.size(), r.ptr(), p-1, nil, 0, &blob)
	}, errTruncate},
}

// reduceCases run pm_reduce over float64s: 2 elements (16 bytes) a rank,
// into 8-byte receive buffers.
var reduceCases = []struct {
	name string
	kind int64
	in   int64 // bytes of the send buffer (-1: in place)
	want int
	solo bool // only the root fails: run on one rank only
}{
	{"allreduce", redAllreduce, 16, errTruncate, false},
	{"reduce-root", redReduce, 16, errTruncate, true},
	{"reduce-send", redReduce, 8, errBuffer, false},
	{"scan", redScan, 16, errTruncate, false},
	{"exscan", redExscan, 16, errTruncate, false},
	{"reduce_scatter_block", redScatterBlock, -2, errTruncate, false},
	{"reduce_scatter", redScatter, -2, errTruncate, false},
	{"allreduce-in-place", redAllreduce, -1, errTruncate, false},
	{"reduce_scatter_block-in-place", redScatterBlock, -1, errTruncate, false},
}

func TestABIShortBuffers(t *testing.T) {
	for _, np := range []int{1, 2, 3} {
		w := commtest.NewWorld(t, np)
		hs := make([]int64, np)
		for r, c := range w.Comms {
			hs[r] = comms.put(c)
		}
		t.Cleanup(func() {
			for _, h := range hs {
				comms.take(h)
			}
		})
		check := func(t *testing.T, name string, want int, call func(b *buffers, h, me, p int64) int64) {
			t.Run(fmt.Sprintf("%s/np=%d", name, np), func(t *testing.T) {
				w.Run(func(c *comm.Comm) error {
					var b buffers
					rc := call(&b, hs[c.Rank()], int64(c.Rank()), int64(np))
					if !b.intact() {
						return fmt.Errorf("rank %d: bytes outside the buffers were written", c.Rank())
					}
					if rc >= 0 {
						return fmt.Errorf("rank %d: result %d, want an error", c.Rank(), rc)
					}
					err, _ := errs.take(-rc)
					if got := class(err); got != want {
						return fmt.Errorf("rank %d: error class %d (%v), want %d", c.Rank(), got, err, want)
					}
					return nil
				})
			})
		}
		for _, tc := range shortBufferCases {
			check(t, tc.name, tc.want, tc.call)
		}
		for _, tc := range reduceCases {
			if tc.solo && np > 1 {
				continue
			}
			check(t, tc.name, tc.want, func(b *buffers, h, me, p int64) int64 {
				count, in := int64(2), tc.in
				switch {
				case tc.kind == redScatter:
					count = 2 * p
				}
				if in == -2 { // every rank's blocks
					in = 16 * p
				}
				s, r := b.of(max(in, 0)), b.of(8)
				sp, scap := s.ptr(), s.size()
				if in < 0 {
					sp, scap = nil, 0
				}
				if in == 8 { // reduce-send: a send buffer of 8 bytes for 16
					r = b.of(16)
				}
				return pm_reduce(h, tc.kind, 0, sp, scap, r.ptr(), r.size(), count, int64s(each(p, 2)...), p,
					tFloat64, opSum, nil)
			})
		}
	}
}

// TestABIRegion checks the one gate every buffer passes: a view never
// reaches past the size Python gave.
func TestABIRegion(t *testing.T) {
	g := newGuarded(8)
	for _, tc := range []struct {
		capacity, n int64
		want        error
	}{
		{8, 8, nil},
		{8, 0, nil},
		{8, 9, errRecvShort},
		{-1, 0, errBadCount},
		{8, -1, errBadCount},
	} {
		b, err := recvRegion(g.ptr(), tc.capacity, tc.n)
		if !errors.Is(err, tc.want) || (err == nil && int64(len(b)) != tc.n) {
			t.Errorf("recvRegion(%d, %d) = %d bytes, %v; want %v", tc.capacity, tc.n, len(b), err, tc.want)
		}
	}
	if _, err := recvRegion(nil, 0, 1); !errors.Is(err, errRecvShort) {
		t.Errorf("a nil buffer for 1 byte: %v", err)
	}
	if _, err := times(1<<62, 8); !errors.Is(err, errBadCount) {
		t.Errorf("an overflowing size: %v", err)
	}
}
