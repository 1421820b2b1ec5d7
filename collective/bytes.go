package collective

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/pmrun/pmrun/comm"
)

// Collectives of byte strings whose lengths only their senders know (the
// pickles of mpi4py's object collectives, any serialized value): no rank
// needs the others' lengths beforehand, as Gatherv and its kin do.
//
// Each runs as one fixed-size collective of blocks of inlineBlock bytes per
// rank (a string's length, then its first bytes), the same call that a
// gather of fixed blocks makes, through the shared area on one node. A
// string longer than a block's room sends the rest afterwards: point to
// point to the ranks that expect it (each knows from the first round), or
// with Allgatherv when every rank needs it. Small strings, the common case,
// cost one collective instead of a round of lengths and a round of data.

// inlineBlock is the bytes per rank of the first round: 8 of length, then
// up to inlineData of the string.
const (
	inlineBlock = 256
	inlineData  = inlineBlock - 8
)

// putInline writes data's length and first bytes into blk (inlineBlock bytes).
func putInline(blk, data []byte) {
	blk = blk[:inlineBlock]
	binary.LittleEndian.PutUint64(blk, uint64(len(data)))
	clear(blk[8+copy(blk[8:], data):]) // a pooled block holds an earlier call's bytes
}

// The first round's blocks come from a pool, and go back when the call
// has succeeded (a failed one may leave a request holding them): a small
// object collective from Python takes a few microseconds, and they were
// most of its garbage.
var blocksPool = sync.Pool{New: func() any { return new([]byte) }}

// getBlocks returns scratch for n blocks, and its handle for putBlocks.
func getBlocks(n int) ([]byte, *[]byte) {
	h := blocksPool.Get().(*[]byte)
	if cap(*h) < n*inlineBlock {
		*h = make([]byte, n*inlineBlock)
	}
	return (*h)[:n*inlineBlock], h
}

func putBlocks(hs ...*[]byte) {
	for _, h := range hs {
		if h != nil {
			blocksPool.Put(h)
		}
	}
}

// lengths reads the string lengths of the blocks in blks, one per rank,
// and checks them and their sum against c's longest message.
func lengths(c *comm.Comm, op string, blks []byte) ([]int, int, error) {
	lens := make([]int, len(blks)/inlineBlock)
	total := 0
	for r := range lens {
		n := binary.LittleEndian.Uint64(blks[r*inlineBlock:])
		if n > uint64(c.MaxMessage()) || total+int(n) > c.MaxMessage() {
			// The ranks cannot all finish the call: a mismatch.
			return nil, 0, &Error{Op: op, Err: fmt.Errorf("rank %d announced %d bytes, and %d came before, more than %d: %w: %w",
				r, n, total, c.MaxMessage(), comm.ErrMessageLarge, ErrMismatch)}
		}
		lens[r] = int(n)
		total += int(n)
	}
	return lens, total, nil
}

// place copies the inline parts of blks into all, rank r's string at
// offs[r], and returns offs: the strings' offsets in all.
func place(all, blks []byte, lens []int) []int {
	offs := make([]int, len(lens))
	off := 0
	for r, n := range lens {
		offs[r] = off
		copy(all[off:off+min(n, inlineData)], blks[r*inlineBlock+8:])
		off += n
	}
	return offs
}

// Alloc gives the memory a call receives its result into, n bytes long (a
// caller's own memory, say, to spare a copy out of memory the runtime made).
// The call writes there until it returns; it never keeps the slice after.
type Alloc func(n int) []byte

// made is the Alloc of the calls without one.
func made(n int) []byte { return make([]byte, n) }

// GatherBytes collects every rank's data, of any length, at root. There it
// returns their concatenation in rank order and each one's length; the other
// ranks get nil.
func GatherBytes(ctx context.Context, c *comm.Comm, root int, data []byte) ([]byte, []int, error) {
	return GatherBytesTo(ctx, c, root, data, made)
}

// GatherBytesTo is GatherBytes receiving the concatenation into memory of
// alloc's (called at root only).
func GatherBytesTo(ctx context.Context, c *comm.Comm, root int, data []byte, alloc Alloc) ([]byte, []int, error) {
	if err := checkRoot(c, "gather", root); err != nil {
		return nil, nil, err
	}
	k := newCall(ctx, c, "gather")
	blk, hb := getBlocks(1)
	putInline(blk, data)
	var blks []byte
	var hs *[]byte
	if k.rank == root {
		blks, hs = getBlocks(k.size)
	}
	if err := Gather(ctx, c, root, blk, blks); err != nil {
		return nil, nil, err
	}
	putBlocks(hb)
	if k.rank != root {
		if len(data) > inlineData {
			return nil, nil, k.send(root, data[inlineData:])
		}
		return nil, nil, nil
	}
	lens, total, err := lengths(c, k.op, blks)
	if err != nil {
		return nil, nil, err
	}
	all := alloc(total)
	offs := place(all, blks, lens)
	putBlocks(hs)
	copy(all[offs[root]:], data) // its own, whole
	var t tails
	for r, n := range lens {
		if r != root && n > inlineData {
			t.recv(k, r, all[offs[r]+inlineData:offs[r]+n])
		}
	}
	if err := t.wait(k); err != nil {
		return nil, nil, err
	}
	return all, lens, nil
}

// AllgatherBytes is GatherBytes with the result on every rank.
func AllgatherBytes(ctx context.Context, c *comm.Comm, data []byte) ([]byte, []int, error) {
	return AllgatherBytesTo(ctx, c, data, made)
}

// AllgatherBytesTo is AllgatherBytes receiving into memory of alloc's.
func AllgatherBytesTo(ctx context.Context, c *comm.Comm, data []byte, alloc Alloc) ([]byte, []int, error) {
	blk, hb := getBlocks(1)
	putInline(blk, data)
	blks, hs := getBlocks(c.Size())
	if err := Allgather(ctx, c, blk, blks); err != nil {
		return nil, nil, err
	}
	lens, total, err := lengths(c, "allgather", blks)
	if err != nil {
		return nil, nil, err
	}
	all := alloc(total)
	offs := place(all, blks, lens)
	putBlocks(hb, hs)
	// The rest of the long strings, which every rank knows of: counts
	// and displacements into all, past each string's inline part.
	counts, displs, more := make([]int, len(lens)), make([]int, len(lens)), false
	for r, n := range lens {
		counts[r], displs[r] = max(n-inlineData, 0), offs[r]+min(n, inlineData)
		more = more || n > inlineData
	}
	if more {
		if err := Allgatherv(ctx, c, data[min(len(data), inlineData):], all, counts, displs); err != nil {
			return nil, nil, err
		}
	}
	return all, lens, nil
}

// ScatterBytes sends parts[r] of root's parts (one per rank, of any length;
// read at the root only) to rank r, which gets it in a buffer of its own.
func ScatterBytes(ctx context.Context, c *comm.Comm, root int, parts [][]byte) ([]byte, error) {
	return ScatterBytesTo(ctx, c, root, parts, made)
}

// ScatterBytesTo is ScatterBytes receiving into memory of alloc's.
func ScatterBytesTo(ctx context.Context, c *comm.Comm, root int, parts [][]byte, alloc Alloc) ([]byte, error) {
	if err := checkRoot(c, "scatter", root); err != nil {
		return nil, err
	}
	k := newCall(ctx, c, "scatter")
	var blks []byte
	var hs *[]byte
	if k.rank == root {
		if len(parts) != k.size {
			return nil, &Error{Op: k.op, Err: fmt.Errorf("%d parts for %d ranks: %w", len(parts), k.size, ErrMismatch)}
		}
		blks, hs = getBlocks(k.size)
		for r, p := range parts {
			putInline(blks[r*inlineBlock:], p)
		}
	}
	blk, hb := getBlocks(1)
	if err := Scatter(ctx, c, root, blks, blk); err != nil {
		return nil, err
	}
	lens, _, err := lengths(c, k.op, blk)
	if err != nil {
		return nil, err
	}
	mine := alloc(lens[0])
	copy(mine, blk[8:])
	putBlocks(hb, hs)
	if k.rank != root {
		if lens[0] > inlineData {
			return mine, k.recv(root, mine[inlineData:])
		}
		return mine, nil
	}
	copy(mine, parts[root])
	var t tails
	for r, p := range parts {
		if r != root && len(p) > inlineData {
			t.send(k, r, p[inlineData:])
		}
	}
	return mine, t.wait(k)
}

// AlltoallBytes sends parts[r] (one per rank, of any length) to rank r, and
// returns the concatenation of what every rank sent this one, in rank order,
// and each one's length.
func AlltoallBytes(ctx context.Context, c *comm.Comm, parts [][]byte) ([]byte, []int, error) {
	return AlltoallBytesTo(ctx, c, parts, made)
}

// AlltoallBytesTo is AlltoallBytes receiving into memory of alloc's.
func AlltoallBytesTo(ctx context.Context, c *comm.Comm, parts [][]byte, alloc Alloc) ([]byte, []int, error) {
	k := newCall(ctx, c, "alltoall")
	if len(parts) != k.size {
		return nil, nil, &Error{Op: k.op, Err: fmt.Errorf("%d parts for %d ranks: %w", len(parts), k.size, ErrMismatch)}
	}
	sblks, hs := getBlocks(k.size)
	rblks, hr := getBlocks(k.size)
	for r, p := range parts {
		putInline(sblks[r*inlineBlock:], p)
	}
	if err := Alltoall(ctx, c, sblks, rblks); err != nil {
		return nil, nil, err
	}
	lens, total, err := lengths(c, k.op, rblks)
	if err != nil {
		return nil, nil, err
	}
	all := alloc(total)
	offs := place(all, rblks, lens)
	putBlocks(hs, hr)
	if n := len(parts[k.rank]); n > inlineData {
		copy(all[offs[k.rank]:], parts[k.rank])
	}
	var t tails
	for r, n := range lens {
		if r != k.rank && n > inlineData {
			t.recv(k, r, all[offs[r]+inlineData:offs[r]+n])
		}
	}
	for r, p := range parts {
		if r != k.rank && len(p) > inlineData {
			t.send(k, r, p[inlineData:])
		}
	}
	return all, lens, t.wait(k)
}

// tails is the point-to-point part of a call: the rest of the strings
// longer than a block's room.
type tails struct {
	reqs []*comm.Request
	want []int // bytes each receive expects; -1 for a send
}

func (t *tails) recv(k *call, src int, b []byte) {
	t.reqs = append(t.reqs, k.c.Irecv(k.ctx, src, k.tag, b))
	t.want = append(t.want, len(b))
}

func (t *tails) send(k *call, dst int, b []byte) {
	t.reqs = append(t.reqs, k.c.Isend(k.ctx, dst, k.tag, b))
	t.want = append(t.want, -1)
}

// wait waits for every request; a receive of fewer bytes than its peer
// announced is a mismatch.
func (t *tails) wait(k *call) error {
	if len(t.reqs) == 0 {
		return nil
	}
	sts, err := comm.WaitAll(t.reqs...)
	if err != nil {
		return k.wrap(err)
	}
	for i, w := range t.want {
		if w >= 0 && sts[i].Count != w {
			return k.wrap(fmt.Errorf("rank %d sent %d bytes, want %d: %w", sts[i].Source, sts[i].Count, w, ErrMismatch))
		}
	}
	return nil
}
