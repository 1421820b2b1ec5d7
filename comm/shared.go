package comm

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/pmrun/pmrun/internal/shm"
)

// Node-shared memory (MPI_Win_allocate_shared): the ranks of a communicator
// that all run on one node map one region, the concatenation of every rank's
// part in rank order, and read and write it with plain loads and stores.
//
// Ranks that are processes share a file in /dev/shm, named
// pmrun-JOB-win-RANK0-TOKEN (JOB the job id, RANK0 the world rank of the
// communicator's rank 0, TOKEN random). Rank 0 creates it; every rank maps it;
// the last to map it removes the name, so once AllocShared returns nothing is
// left in /dev/shm whatever happens to the ranks (the kernel frees the memory
// with the last mapping). A rank that dies between the creation and the last
// mapping leaves the name, which the launcher removes at the job's end with
// the job's other files (shm.RemoveJob). The file starts with a page of
// header (the count of ranks that mapped it); the region follows, so it is
// page-aligned.
//
// Ranks that are goroutines of one process (NewLocalWorld) share one
// anonymous mapping instead, handed from rank 0 to the others through a
// registry of this process.

// sharedHeader is the size of the header page before the region in the file.
const sharedHeader = 4096

// maxShared bounds a region: 64 TiB, more than any node has, so that sums
// of sizes cannot overflow.
const maxShared = 1 << 46

// Shared is a region of memory shared by the ranks of a communicator that all
// run on one node, made by AllocShared. Its bytes are the same memory in
// every rank: a store by one rank is seen by the others once they have
// synchronised with it (by a message, or a barrier, after the store). Its
// methods may be called concurrently; Free is collective.
type Shared struct {
	c      *Comm
	mu     sync.Mutex // guards mem and region (Free unmaps them)
	mem    []byte     // this rank's mapping (with the header for a file), nil once freed
	region []byte     // the whole region within mem
	offs   []int      // offs[r] is where rank r's part starts; offs[size] is the region's size
	local  *localRegion
}

// AllocShared allocates memory shared by the ranks of c, which must all run
// on this node (a communicator from SplitByNode, for example). Each rank
// passes the size in bytes of its own part (which may differ between ranks,
// and be 0); the region is the concatenation of every rank's part in rank
// order, with no padding, so a part is aligned for elements of a type only if
// the parts before it are multiples of that type's size. The region starts on
// a page boundary and is zeroed. It is collective over c.
//
// A communicator whose ranks run on several nodes gets an error matching
// ErrNotShared that names a rank on another node than rank 0.
func AllocShared(ctx context.Context, c *Comm, bytes int) (*Shared, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("comm: AllocShared: %w", ErrClosed)
	}
	for r := range c.size {
		if c.Node(r) != c.Node(0) {
			return nil, fmt.Errorf("comm: AllocShared: %w: rank %d runs on node %q, rank 0 on %q",
				ErrNotShared, r, c.Node(r), c.Node(0))
		}
	}
	size := int64(bytes)
	if bytes < 0 || bytes > maxShared {
		size = -1 // every rank learns that this one asked for a bad size
	}
	all, err := c.allgatherInts(ctx, size)
	if err != nil {
		return nil, fmt.Errorf("comm: AllocShared: %w", err)
	}
	offs := make([]int, c.size+1)
	for r, v := range all {
		if v[0] < 0 {
			return nil, fmt.Errorf("comm: AllocShared: rank %d asked for a bad size (want 0 to %d bytes)", r, maxShared)
		}
		offs[r+1] = offs[r] + int(v[0])
	}
	if offs[c.size] > maxShared {
		return nil, fmt.Errorf("comm: AllocShared: %d bytes in all is more than %d", offs[c.size], maxShared)
	}
	s := &Shared{c: c, offs: offs}
	if c.e.addrs == nil {
		err = s.allocLocal(ctx)
	} else {
		err = s.allocFile(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("comm: AllocShared: rank %d: %w", c.rank, err)
	}
	return s, nil
}

// announce sends rank 0's outcome (0 for success, and a value naming the
// region) to the other ranks, who return it, or an error if rank 0 failed.
func (s *Shared) announce(ctx context.Context, failed bool, name uint64) (uint64, error) {
	c := s.c
	var msg [16]byte
	if c.rank == 0 {
		if failed {
			msg[0] = 1
		}
		binary.LittleEndian.PutUint64(msg[8:], name)
		reqs := make([]*Request, 0, c.size)
		for r := 1; r < c.size; r++ {
			reqs = append(reqs, c.Isend(ctx, r, tagAgree, msg[:]))
		}
		_, err := WaitAll(reqs...)
		return name, err
	}
	if _, err := c.RecvInto(ctx, 0, tagAgree, msg[:]); err != nil {
		return 0, err
	}
	if msg[0] != 0 {
		return 0, errors.New("rank 0 could not create the region (its error says why)")
	}
	return binary.LittleEndian.Uint64(msg[8:]), nil
}

// agree tells every rank whether each one mapped the region; it returns an
// error naming the first rank that did not.
func (s *Shared) agree(ctx context.Context, mapped bool) error {
	ok := int64(0)
	if mapped {
		ok = 1
	}
	all, err := s.c.allgatherInts(ctx, ok)
	if err != nil {
		return err
	}
	for r, v := range all {
		if v[0] != 1 {
			return fmt.Errorf("rank %d could not map the region", r)
		}
	}
	return nil
}

func (s *Shared) setRegion(mem []byte, off int) {
	s.mem = mem
	if mem == nil {
		s.region = []byte{}
		return
	}
	s.region = mem[off : off+s.offs[len(s.offs)-1] : off+s.offs[len(s.offs)-1]]
}

// sharedPath names the file of the region that the rank of world rank rank0
// creates with token.
func sharedPath(job string, rank0 int, token uint64) string {
	return fmt.Sprintf("%s/pmrun-%s-win-%d-%016x", shm.Dir, job, rank0, token)
}

// allocFile makes the region of ranks that are processes: a file in /dev/shm.
func (s *Shared) allocFile(ctx context.Context) error {
	c := s.c
	total := s.offs[c.size]
	var token uint64
	var cerr error
	if c.rank == 0 {
		var b [8]byte
		rand.Read(b[:])
		token = binary.LittleEndian.Uint64(b[:])
		cerr = createShared(sharedPath(c.e.job, c.group[0], token), sharedHeader+total)
	}
	token, err := s.announce(ctx, cerr != nil, token)
	path := sharedPath(c.e.job, c.group[0], token)
	if cerr != nil || err != nil {
		if c.rank == 0 {
			os.Remove(path)
		}
		return errors.Join(cerr, err)
	}
	mem, merr := mapShared(path, sharedHeader+total)
	if merr != nil {
		c.e.debugf("rank %d: %v", c.rank, merr)
	}
	if err := s.agree(ctx, merr == nil); err != nil {
		if mem != nil {
			syscall.Munmap(mem)
		}
		os.Remove(path) // not every rank mapped it, so nobody else removes it
		return errors.Join(merr, err)
	}
	if (*atomic.Int32)(unsafe.Pointer(&mem[0])).Add(1) == int32(c.size) {
		os.Remove(path) // every rank has it mapped
	}
	s.setRegion(mem, sharedHeader)
	return nil
}

// createShared creates the file at path with size bytes reserved: a full
// /dev/shm fails here rather than with SIGBUS later.
func createShared(path string, size int) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(size)); err != nil {
		os.Remove(path)
		return fmt.Errorf("reserving %d bytes of shared memory: %w", size, err)
	}
	return nil
}

// mapShared maps the file at path, which must have size bytes.
func mapShared(path string, size int) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Size() != int64(size) {
		return nil, fmt.Errorf("shared region %s: not %d bytes (%v)", path, size, err)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mapping %d bytes of shared memory: %w", size, err)
	}
	return mem, nil
}

// localRegion is a region of goroutine ranks: one mapping that all use.
type localRegion struct {
	mem   []byte
	users atomic.Int32 // ranks that have not freed it; the last unmaps it
}

// localRegions hands regions from rank 0 to the other goroutine ranks of a
// communicator: rank 0 registers a region under a fresh id and sends the id;
// the last rank to take it out removes it from the registry.
var localRegions struct {
	mu    sync.Mutex // guards the fields below
	next  uint64
	byID  map[uint64]*localRegion
	taken map[uint64]int // ranks that took the region so far
}

// allocLocal makes the region of ranks that are goroutines of this process.
func (s *Shared) allocLocal(ctx context.Context) error {
	c := s.c
	total := s.offs[c.size]
	var id uint64
	var cerr error
	if c.rank == 0 {
		l := &localRegion{}
		if total > 0 {
			l.mem, cerr = syscall.Mmap(-1, 0, total, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_SHARED)
		}
		if cerr == nil {
			l.users.Store(int32(c.size))
			id = registerLocal(l)
		}
	}
	id, err := s.announce(ctx, cerr != nil, id)
	if cerr != nil || err != nil {
		if c.rank == 0 {
			if l := takeLocal(id, 1); l != nil && l.mem != nil {
				syscall.Munmap(l.mem)
			}
		}
		return errors.Join(cerr, err)
	}
	l := takeLocal(id, c.size)
	if err := s.agree(ctx, l != nil); err != nil {
		return err // cannot happen: rank 0 registered it before announcing it
	}
	s.local = l
	s.setRegion(l.mem, 0)
	return nil
}

func registerLocal(l *localRegion) uint64 {
	r := &localRegions
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID == nil {
		r.byID, r.taken = make(map[uint64]*localRegion), make(map[uint64]int)
	}
	r.next++
	r.byID[r.next] = l
	return r.next
}

// takeLocal returns the region registered under id, removing it from the
// registry once it has been taken n times.
func takeLocal(id uint64, n int) *localRegion {
	r := &localRegions
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.byID[id]
	if l == nil {
		return nil
	}
	if r.taken[id]++; r.taken[id] >= n {
		delete(r.byID, id)
		delete(r.taken, id)
	}
	return l
}

// Bytes returns the whole region: every rank's part, in rank order. It is the
// same memory in every rank. After Free it returns nil.
func (s *Shared) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.region
}

// Part returns rank's part of the region (MPI_Win_shared_query), or nil for
// a rank outside the communicator or after Free.
func (s *Shared) Part(rank int) []byte {
	b := s.Bytes()
	if b == nil || rank < 0 || rank >= len(s.offs)-1 {
		return nil
	}
	return b[s.offs[rank]:s.offs[rank+1]:s.offs[rank+1]]
}

// Offset returns where rank's part starts in the region, in bytes.
func (s *Shared) Offset(rank int) int {
	if rank < 0 || rank >= len(s.offs)-1 {
		return -1
	}
	return s.offs[rank]
}

// Comm returns the communicator the region was allocated over.
func (s *Shared) Comm() *Comm { return s.c }

// SharedSlice views the whole region of s as elements of T, without copying:
// len(s.Bytes())/size-of-T elements (a partial element at the end is left
// out). The region is page-aligned, so the view is aligned. It returns nil
// after Free.
func SharedSlice[T Number](s *Shared) []T {
	b := s.Bytes()
	if b == nil {
		return nil
	}
	var z T
	n := len(b) / int(unsafe.Sizeof(z))
	if n == 0 {
		return []T{}
	}
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

// Free releases the region, collectively over its communicator: every rank
// waits until all have called Free (so none still uses the memory), then
// unmaps it. Slices of the region must not be used afterwards. A second Free
// returns an error.
func (s *Shared) Free(ctx context.Context) error {
	s.mu.Lock()
	freed := s.region == nil
	s.mu.Unlock()
	if freed {
		return errors.New("comm: Free: shared region already freed")
	}
	_, err := s.c.allgatherInts(ctx, 0) // a barrier
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.local != nil:
		if s.local.users.Add(-1) == 0 && s.local.mem != nil {
			syscall.Munmap(s.local.mem)
		}
	case s.mem != nil:
		syscall.Munmap(s.mem)
	}
	s.mem, s.region, s.local = nil, nil, nil
	if err != nil {
		return fmt.Errorf("comm: Free: %w", err)
	}
	return nil
}
