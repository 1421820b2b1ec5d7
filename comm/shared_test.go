package comm_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/comm/commtest"
)

// checkShared allocates a region in which rank r's part holds r+1 float64s
// (rank 1 of a world of 3 or more asks for none), has each rank fill its part
// with values naming it, and checks after a barrier that every rank sees
// every part, through Part, Bytes and SharedSlice.
func checkShared(ctx context.Context, c *comm.Comm) error {
	n := c.Rank() + 1
	if c.Size() > 2 && c.Rank() == 1 {
		n = 0
	}
	sh, err := comm.AllocShared(ctx, c, 8*n)
	if err != nil {
		return err
	}
	mine, err := comm.FromBytes[float64](sh.Part(c.Rank()))
	if err != nil {
		return err
	}
	for i := range mine {
		mine[i] = float64(1000*c.Rank() + i)
	}
	if err := collective.Barrier(ctx, c); err != nil {
		return err
	}
	all := comm.SharedSlice[float64](sh)
	if len(all)*8 != len(sh.Bytes()) {
		return fmt.Errorf("typed view has %d elements for %d bytes", len(all), len(sh.Bytes()))
	}
	at := 0
	for r := range c.Size() {
		part := sh.Part(r)
		if sh.Offset(r) != at*8 {
			return fmt.Errorf("rank %d's part at byte %d, want %d", r, sh.Offset(r), at*8)
		}
		for i := range len(part) / 8 {
			if want := float64(1000*r + i); all[at+i] != want {
				return fmt.Errorf("element %d of rank %d's part is %v, want %v", i, r, all[at+i], want)
			}
		}
		at += len(part) / 8
	}
	if at != len(all) {
		return fmt.Errorf("parts hold %d elements, the region %d", at, len(all))
	}
	// Every rank writes into rank 0's part too: one array for all.
	if err := collective.Barrier(ctx, c); err != nil {
		return err
	}
	if c.Rank() == c.Size()-1 {
		all[0] = -1
	}
	if err := collective.Barrier(ctx, c); err != nil {
		return err
	}
	if all[0] != -1 {
		return fmt.Errorf("a store by rank %d was not seen by rank %d", c.Size()-1, c.Rank())
	}
	if err := sh.Free(ctx); err != nil {
		return err
	}
	if sh.Bytes() != nil || comm.SharedSlice[float64](sh) != nil {
		return errors.New("the region is still there after Free")
	}
	if err := sh.Free(ctx); err == nil {
		return errors.New("a second Free succeeded")
	}
	return nil
}

func TestAllocSharedInProcess(t *testing.T) {
	for np := 1; np <= 4; np++ {
		t.Run(fmt.Sprintf("np=%d", np), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			commtest.NewWorld(t, np).Run(func(c *comm.Comm) error { return checkShared(ctx, c) })
		})
	}
}

// TestAllocSharedProcesses runs ranks connected as processes are, so the
// region is a file in /dev/shm, which must be gone once AllocShared returns.
func TestAllocSharedProcesses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := commtest.NewNetWorld(t, []string{"n", "n", "n"}, nil)
	before := sharedFiles(t)
	w.Run(func(c *comm.Comm) error {
		sh, err := comm.AllocShared(ctx, c, 1<<20)
		if err != nil {
			return err
		}
		if err := collective.Barrier(ctx, c); err != nil {
			return err
		}
		if c.Rank() == 0 {
			if left := sharedFiles(t); len(left) > len(before) {
				return fmt.Errorf("files left in /dev/shm after AllocShared: %v", left)
			}
		}
		if err := collective.Barrier(ctx, c); err != nil {
			return err
		}
		return errors.Join(sh.Free(ctx), checkShared(ctx, c))
	})
}

// sharedFiles lists the region files of this process's worlds in /dev/shm.
func sharedFiles(t *testing.T) []string {
	t.Helper()
	names, err := filepath.Glob(fmt.Sprintf("/dev/shm/pmrun-w%d-*-win-*", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestAllocSharedAcrossNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := commtest.NewWorldOnNodes(t, []string{"a", "a", "b", "a"}, nil)
	for r, c := range w.Comms {
		_, err := comm.AllocShared(ctx, c, 64)
		if !errors.Is(err, comm.ErrNotShared) || !strings.Contains(err.Error(), `rank 2 runs on node "b"`) {
			t.Errorf("rank %d: AllocShared across nodes: %v, want ErrNotShared naming rank 2", r, err)
		}
	}
	// The ranks of one node, from SplitByNode, share memory.
	w.Run(func(c *comm.Comm) error {
		local, err := c.SplitByNode(ctx)
		if err != nil {
			return err
		}
		defer local.Close()
		return checkShared(ctx, local)
	})
}

func TestAllocSharedBadSize(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := commtest.NewWorld(t, 3)
	w.Run(func(c *comm.Comm) error {
		n := 8
		if c.Rank() == 1 {
			n = -8
		}
		if _, err := comm.AllocShared(ctx, c, n); err == nil || !strings.Contains(err.Error(), "rank 1 asked for a bad size") {
			return fmt.Errorf("AllocShared with rank 1 asking for -8 bytes: %v", err)
		}
		return nil
	})
}

// TestAllocSharedEmpty: a region of no bytes at all, between goroutines and
// between ranks connected as processes, is empty but usable, and frees.
func TestAllocSharedEmpty(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for name, w := range map[string]*commtest.World{
		"in-process": commtest.NewWorld(t, 2),
		"processes":  commtest.NewNetWorld(t, []string{"n", "n"}, nil),
	} {
		t.Run(name, func(t *testing.T) {
			w.Run(func(c *comm.Comm) error {
				sh, err := comm.AllocShared(ctx, c, 0)
				if err != nil {
					return err
				}
				if b := sh.Bytes(); b == nil || len(b) != 0 || len(sh.Part(1)) != 0 || sh.Part(2) != nil {
					return fmt.Errorf("empty region: Bytes %v, Part(1) %v, Part(2) %v", b, sh.Part(1), sh.Part(2))
				}
				return sh.Free(ctx)
			})
		})
	}
}
