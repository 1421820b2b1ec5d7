package collective_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
)

// str is the string rank src gives rank dst in round i: lengths around the
// first round's room (248 bytes) and far past it, 0 included.
func str(src, dst, i int) []byte {
	lens := []int{0, 1, 247, 248, 249, 1000, 70 << 10}
	n := lens[(src*3+dst*5+i)%len(lens)]
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(src*31 + dst*7 + i + j)
	}
	return b
}

// checkJoined checks that all holds want's strings one after another, and
// lens their lengths.
func checkJoined(all []byte, lens []int, want [][]byte) error {
	if len(lens) != len(want) {
		return fmt.Errorf("%d lengths, want %d", len(lens), len(want))
	}
	off := 0
	for r, w := range want {
		if lens[r] != len(w) || off+lens[r] > len(all) || !bytes.Equal(all[off:off+lens[r]], w) {
			return fmt.Errorf("string of rank %d wrong (length %d, want %d)", r, lens[r], len(w))
		}
		off += lens[r]
	}
	if off != len(all) {
		return fmt.Errorf("%d bytes in all, want %d", len(all), off)
	}
	return nil
}

// dirty is an Alloc of memory holding garbage, so that a byte a call leaves
// unwritten shows; it remembers what it gave last.
type dirty struct{ got []byte }

func (d *dirty) alloc(n int) []byte {
	d.got = bytes.Repeat([]byte{0xa5}, n)
	return d.got
}

// in checks that a result is the memory d gave (nil: none given).
func (d *dirty) in(b []byte) error {
	if d == nil || len(b) == 0 {
		return nil
	}
	if len(d.got) != len(b) || &d.got[0] != &b[0] {
		return errors.New("the result is not in the memory of the call's Alloc")
	}
	return nil
}

// bytesRound runs each collective of strings once, root i % size; odd
// rounds receive into memory of an Alloc's.
func bytesRound(ctx context.Context, c *comm.Comm, i int) error {
	p, me, root := c.Size(), c.Rank(), i%c.Size()
	var d *dirty
	gather, allgather := collective.GatherBytes, collective.AllgatherBytes
	scatter, alltoall := collective.ScatterBytes, collective.AlltoallBytes
	if i%2 == 1 {
		d = &dirty{}
		gather = func(ctx context.Context, c *comm.Comm, root int, b []byte) ([]byte, []int, error) {
			return collective.GatherBytesTo(ctx, c, root, b, d.alloc)
		}
		allgather = func(ctx context.Context, c *comm.Comm, b []byte) ([]byte, []int, error) {
			return collective.AllgatherBytesTo(ctx, c, b, d.alloc)
		}
		scatter = func(ctx context.Context, c *comm.Comm, root int, parts [][]byte) ([]byte, error) {
			return collective.ScatterBytesTo(ctx, c, root, parts, d.alloc)
		}
		alltoall = func(ctx context.Context, c *comm.Comm, parts [][]byte) ([]byte, []int, error) {
			return collective.AlltoallBytesTo(ctx, c, parts, d.alloc)
		}
	}
	var want [][]byte
	for r := range p {
		want = append(want, str(r, 0, i))
	}
	all, lens, err := gather(ctx, c, root, str(me, 0, i))
	if err != nil {
		return err
	}
	if me == root {
		if err := errors.Join(checkJoined(all, lens, want), d.in(all)); err != nil {
			return fmt.Errorf("round %d gather: %v", i, err)
		}
	} else if all != nil || lens != nil {
		return fmt.Errorf("round %d gather: a result off the root", i)
	}
	if all, lens, err = allgather(ctx, c, str(me, 0, i)); err != nil {
		return err
	}
	if err := errors.Join(checkJoined(all, lens, want), d.in(all)); err != nil {
		return fmt.Errorf("round %d allgather: %v", i, err)
	}
	var parts [][]byte
	if me == root {
		for r := range p {
			parts = append(parts, str(root, r, i))
		}
	}
	mine, err := scatter(ctx, c, root, parts)
	if err != nil {
		return err
	}
	if !bytes.Equal(mine, str(root, me, i)) || d.in(mine) != nil {
		return fmt.Errorf("round %d scatter: %d bytes wrong", i, len(mine))
	}
	parts, want = nil, nil
	for r := range p {
		parts = append(parts, str(me, r, i))
		want = append(want, str(r, me, i))
	}
	if all, lens, err = alltoall(ctx, c, parts); err != nil {
		return err
	}
	if err := errors.Join(checkJoined(all, lens, want), d.in(all)); err != nil {
		return fmt.Errorf("round %d alltoall: %v", i, err)
	}
	return nil
}

// TestBytesCollectives runs the collectives of strings of every length
// class on each kind of world: goroutine ranks, ranks of one node (the
// shared area), ranks of several nodes (sockets).
func TestBytesCollectives(t *testing.T) {
	worlds := map[string]func(t *testing.T, np int) *commtest.World{
		"local":   func(t *testing.T, np int) *commtest.World { return commtest.NewWorld(t, np) },
		"onenode": oneNodeWorld,
		"nodes":   func(t *testing.T, np int) *commtest.World { return commtest.NewNetWorld(t, spreadNodes(np), nil) },
	}
	for name, mk := range worlds {
		for _, np := range []int{1, 2, 3, 5} {
			t.Run(fmt.Sprintf("%s/np=%d", name, np), func(t *testing.T) {
				w := mk(t, np)
				w.Run(func(c *comm.Comm) error {
					for i := range 9 {
						if err := bytesRound(context.Background(), c, i); err != nil {
							return err
						}
					}
					return nil
				})
			})
		}
	}
}

// TestBytesBadArguments: a wrong number of parts and a bad root are refused
// on the rank that passed them, before anything is sent.
func TestBytesBadArguments(t *testing.T) {
	w := commtest.NewWorld(t, 2)
	c := w.Comms[0]
	ctx := context.Background()
	if _, _, err := collective.AlltoallBytes(ctx, c, [][]byte{nil}); !errors.Is(err, collective.ErrMismatch) {
		t.Errorf("alltoall of 1 part on 2 ranks: %v, want %v", err, collective.ErrMismatch)
	}
	if _, err := collective.ScatterBytes(ctx, c, 0, [][]byte{nil, nil, nil}); !errors.Is(err, collective.ErrMismatch) {
		t.Errorf("scatter of 3 parts on 2 ranks: %v, want %v", err, collective.ErrMismatch)
	}
	if _, _, err := collective.GatherBytes(ctx, c, 2, nil); err == nil {
		t.Error("gather to root 2 of 2 ranks: no error")
	}
}
