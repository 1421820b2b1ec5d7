package comm_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
)

func i64s(b []byte) []int64 {
	out := make([]int64, len(b)/8)
	for i := range out {
		out[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return out
}

func le64(vs ...int64) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, uint64(v))
	}
	return b
}

// TestWinFence: every rank puts its rank into slot r of every other rank's
// window and gets them back, in fence epochs, on one node and over TCP.
func TestWinFence(t *testing.T) {
	for _, np := range []int{1, 2, 5} {
		for _, net := range []bool{false, true} {
			t.Run(fmt.Sprintf("np=%d/tcp=%v", np, net), func(t *testing.T) {
				w := commtest.NewWorld(t, np)
				if net {
					nodes := make([]string, np)
					for i := range nodes {
						nodes[i] = fmt.Sprint("n", i)
					}
					w = commtest.NewWorldOnNodes(t, nodes, nil)
				}
				w.Run(func(c *comm.Comm) error {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					defer cancel()
					win, err := c.WinAllocate(ctx, 8*np, 8)
					if err != nil {
						return err
					}
					me := c.Rank()
					for r := range np {
						if _, err := win.Put(ctx, le64(int64(100*me+r)), r, me); err != nil {
							return err
						}
					}
					if err := win.Fence(ctx); err != nil {
						return err
					}
					want := make([]int64, np)
					for r := range np {
						want[r] = int64(100*r + me)
					}
					if got := i64s(win.Memory()); !slices.Equal(got, want) {
						return fmt.Errorf("rank %d window %v, want %v", me, got, want)
					}
					got := make([]byte, 8*np)
					if _, err := win.Get(ctx, got, (me+1)%np, 0); err != nil {
						return err
					}
					if err := win.Fence(ctx); err != nil {
						return err
					}
					for r, v := range i64s(got) {
						if v != int64(100*r+(me+1)%np) {
							return fmt.Errorf("rank %d got %v from rank %d", me, i64s(got), (me+1)%np)
						}
					}
					return win.Free(ctx)
				})
			})
		}
	}
}

// TestWinAccumulateLocks: every rank adds to rank 0's counter under shared
// locks, fetch-and-adds a ticket, and takes turns under the exclusive lock;
// the sums and the tickets come out exact.
func TestWinAccumulateLocks(t *testing.T) {
	const np, rounds = 4, 25
	commtest.NewWorld(t, np).Run(func(c *comm.Comm) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// rank 0's window: a sum, a ticket counter, a counter, then a slot per ticket
		win, err := c.WinAllocate(ctx, 8*(3+rounds*np), 8)
		if err != nil {
			return err
		}
		me := c.Rank()
		for range rounds {
			if err := win.Lock(ctx, comm.LockShared, 0); err != nil {
				return err
			}
			if _, err := win.Accumulate(ctx, le64(int64(me+1)), 0, 0, comm.OpSum, comm.Int64); err != nil {
				return err
			}
			old := make([]byte, 8)
			if _, err := win.GetAccumulate(ctx, le64(1), old, 0, 1, comm.OpSum, comm.Int64); err != nil {
				return err
			}
			if err := win.Unlock(ctx, 0); err != nil {
				return err
			}
			ticket := i64s(old)[0]
			if ticket < 0 || ticket >= rounds*np {
				return fmt.Errorf("rank %d drew ticket %d", me, ticket)
			}
			if _, err := win.Accumulate(ctx, le64(1), 0, 3+int(ticket), comm.OpSum, comm.Int64); err != nil {
				return err
			}
			// a read-modify-write that only the exclusive lock makes safe
			if err := win.Lock(ctx, comm.LockExclusive, 0); err != nil {
				return err
			}
			cur := make([]byte, 8)
			if _, err := win.Get(ctx, cur, 0, 2); err != nil {
				return err
			}
			if err := win.Flush(ctx, 0); err != nil {
				return err
			}
			if _, err := win.Put(ctx, le64(i64s(cur)[0]+1), 0, 2); err != nil {
				return err
			}
			if err := win.Unlock(ctx, 0); err != nil {
				return err
			}
		}
		if err := win.Fence(ctx); err != nil {
			return err
		}
		if me == 0 {
			got := i64s(win.Memory())
			if want := int64(rounds * np * (np + 1) / 2); got[0] != want || got[1] != rounds*np || got[2] != rounds*np {
				return fmt.Errorf("rank 0 window %v, want [%d %d %d]", got[:3], want, rounds*np, rounds*np)
			}
			for i, n := range got[3:] {
				if n != 1 {
					return fmt.Errorf("ticket %d was drawn %d times", i, n)
				}
			}
		}
		return win.Free(ctx)
	})
}

// TestWinPSCW: rank 0 exposes to the others, which each put their rank at
// their slot in an access epoch; Wait returns with all of them there.
func TestWinPSCW(t *testing.T) {
	const np = 4
	commtest.NewWorld(t, np).Run(func(c *comm.Comm) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		win, err := c.WinAllocate(ctx, 8*np, 8)
		if err != nil {
			return err
		}
		me := c.Rank()
		if me == 0 {
			if err := win.Post(ctx, []int{1, 2, 3}); err != nil {
				return err
			}
			if err := win.Wait(ctx); err != nil {
				return err
			}
			if got := i64s(win.Memory()); !slices.Equal(got, []int64{0, 10, 20, 30}) {
				return fmt.Errorf("after Wait: %v", got)
			}
		} else {
			if err := win.Start(ctx, []int{0}); err != nil {
				return err
			}
			if _, err := win.Put(ctx, le64(int64(10*me)), 0, me); err != nil {
				return err
			}
			if err := win.Complete(ctx); err != nil {
				return err
			}
		}
		return win.Free(ctx)
	})
}

func TestWinCompareAndSwapAndOps(t *testing.T) {
	commtest.NewWorld(t, 2).Run(func(c *comm.Comm) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		mem := make([]byte, 16)
		win, err := c.WinCreate(ctx, mem, 1)
		if err != nil {
			return err
		}
		if c.Rank() == 1 {
			old := make([]byte, 8)
			if _, err := win.CompareAndSwap(ctx, le64(7), le64(0), old, 0, 0); err != nil {
				return err
			}
			if _, err := win.CompareAndSwap(ctx, le64(9), le64(0), make([]byte, 8), 0, 0); err != nil {
				return err
			}
			f := binary.LittleEndian.AppendUint64(nil, math.Float64bits(2.5))
			if _, err := win.Accumulate(ctx, f, 0, 8, comm.OpMax, comm.Float64); err != nil {
				return err
			}
			if _, err := win.Accumulate(ctx, le64(1), 0, 0, comm.OpBxor, comm.Float64); !errors.Is(err, comm.ErrRMA) {
				return fmt.Errorf("bxor on floats: %v, want ErrRMA", err)
			}
			if _, err := win.Put(ctx, le64(1), 0, 9); !errors.Is(err, comm.ErrRMA) {
				return fmt.Errorf("a put past the window: %v, want ErrRMA", err)
			}
			if err := win.Flush(ctx, 0); err != nil {
				return err
			}
			if i64s(old)[0] != 0 {
				return fmt.Errorf("first CAS saw %d", i64s(old)[0])
			}
		}
		if err := win.Fence(ctx); err != nil {
			return err
		}
		if c.Rank() == 0 {
			if v := i64s(mem)[0]; v != 7 {
				return fmt.Errorf("after CAS: %d, want 7 (the second CAS must fail)", v)
			}
			if f := math.Float64frombits(binary.LittleEndian.Uint64(mem[8:])); f != 2.5 {
				return fmt.Errorf("max: %v", f)
			}
		}
		return win.Free(ctx)
	})
}

// TestWinDynamic: rank 1 attaches memory to a dynamic window and tells rank
// 0 its address; rank 0 puts and gets there, and an access to memory not
// attached fails at the flush instead of hanging.
func TestWinDynamic(t *testing.T) {
	commtest.NewWorld(t, 2).Run(func(c *comm.Comm) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		win, err := c.WinCreateDynamic(ctx)
		if err != nil {
			return err
		}
		mem := make([]byte, 16)
		if c.Rank() == 1 {
			if err := win.Attach(mem); err != nil {
				return err
			}
			if err := c.Send(ctx, 0, 1, le64(int64(comm.Address(mem)))); err != nil {
				return err
			}
		} else {
			b, _, err := c.Recv(ctx, 1, 1)
			if err != nil {
				return err
			}
			addr := int(i64s(b)[0])
			if err := win.Lock(ctx, comm.LockExclusive, 1); err != nil {
				return err
			}
			if _, err := win.Put(ctx, le64(42), 1, addr+8); err != nil {
				return err
			}
			got := make([]byte, 8)
			if _, err := win.Get(ctx, got, 1, addr+8); err != nil {
				return err
			}
			if err := win.Unlock(ctx, 1); err != nil {
				return err
			}
			if i64s(got)[0] != 42 {
				return fmt.Errorf("got %v back", i64s(got))
			}
			if _, err := win.Put(ctx, le64(1), 1, addr+16); err != nil {
				return err
			}
			if err := win.Flush(ctx, 1); !errors.Is(err, comm.ErrRMARange) {
				return fmt.Errorf("a put past the attached memory: %v, want ErrRMARange", err)
			}
		}
		if err := win.Fence(ctx); err != nil {
			return err
		}
		if c.Rank() == 1 {
			if v := i64s(mem)[1]; v != 42 {
				return fmt.Errorf("attached memory holds %d, want 42", v)
			}
			if err := win.Detach(mem); err != nil {
				return err
			}
			if err := win.Detach(mem); !errors.Is(err, comm.ErrRMA) {
				return fmt.Errorf("detaching twice: %v", err)
			}
		}
		return win.Free(ctx)
	})
}
