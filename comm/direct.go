package comm

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"github.com/pmrun/pmrun/internal/wire"
	"golang.org/x/sys/unix"
)

// Direct copies. Between two processes of one node, a rendezvous message
// crosses with one copy, made by the receiver straight out of the sender's
// memory (process_vm_readv, Linux's cross-memory attach), instead of two
// through the ring (the sender's into it, the receiver's out of it). The
// sender announces the message with KindRTSMem, giving the address of its
// bytes; the receive that matches it copies them into place and answers
// KindDone, which completes the send. Until then the send has not returned, so
// its buffer stays alive and unchanged (Go's collector does not move heap
// objects). If the copy fails, the receiver answers a plain KindCTS and the
// data comes through the ring as after a KindRTS.
//
// The kernel allows the copy only to a process that may ptrace the sender:
// the same user, and a Yama ptrace_scope or seccomp profile (Docker's default
// one refuses the call) that permits it. Each side finds out once per link,
// before it first announces a message that way, by reading a word of the
// peer's mapping of their shared segment; a link where that fails announces
// with plain KindRTS, and a receiver refused a copy stops announcing too.
//
// Where it pays depends on the machine, and on how many messages are in
// flight. On a 2-core AMD EPYC VM, with both cores idle, the ring's two
// copies, made at once by the two ranks, were faster (bench/p2p, np 2, 3
// rounds): ping-pong latency 6.4-7.4 against 8.4-8.6 us at 64 KiB, 38-40
// against 83-85 us at 1 MiB, bandwidth 33.9-36.5 against 10.9-12.5 GB/s at
// 1 MiB; with the cores shared with other work, each of the ring's three
// hops (RTS, CTS, data) waits for the other rank to be scheduled, and direct
// copies made the 64 KiB to 1 MiB ping-pong 2-5x faster. On a 2-core Intel
// Xeon VM (2 rounds, alternating PMRUN_SHM_DIRECT=off and on, with Open MPI,
// whose vader copies these sizes with the same call): latency 64 KiB 14.0-
// 15.1 through the ring, 6.5-6.7 direct, Open MPI 4.1-4.2 us; 256 KiB 38-39,
// 12.3-12.4, 10.9-11.0; 512 KiB 63, 22-23, 20-21; 1 MiB 120-128, 67-77,
// 62-65; bandwidth, one buffer sent 64 times, 256 KiB 9.7, 26, 26-27 GB/s;
// but 64 distinct buffers at once, 512 KiB 10.0-11.2, 5.6-6.0, 7.7-7.9, and
// 1 MiB 10.0-10.4, 4.3-4.4, 5.0-5.4: a window of large messages keeps both
// ranks copying through the ring, where a direct copy leaves the sender's
// core idle. So by default messages up to 512 KiB (Config.ShmDirectMax) are
// copied directly, never far from Open MPI's single copy, and a larger one
// too when it is the only rendezvous send to its peer in flight (a
// ping-pong, an exchange; the link counts them in rdvOut); in a window of
// them the others go through the ring. Measured again on a 2-core Intel
// Xeon VM (bench/p2p, np 2, alternating with Open MPI): ping-pong 1 MiB
// 110-118 us through the ring, 59-60 alone direct, Open MPI 50-55; 4 MiB
// 425-503, 373-405, 360-380; windows of 64 distinct 1 MiB buffers 7.3-8.0
// GB/s either way (Open MPI 5.6-5.8).
//
// On AMD CPUs the kernel's copy (a string move, rep movsb) is the slow
// part: on a 2-core EPYC 7xx3 (Zen 3) VM, with both cores idle, a C
// ping-pong of process_vm_readv copied 1 MiB in 139-181 us where Go's copy
// in user space takes 31, and pmrun through the ring beat direct copies at
// every size (bench/p2p, np 2, 3 rounds alternating, medians, direct /
// ring / Open MPI, CPUs far apart): latency 32 KiB 9.9 / 3.5 / 7.8 us, 1
// MiB 149 / 70 / 133, 4 MiB 1030 / 374 / 762; bandwidth 1 MiB 10.3 / 20.0
// / 8.1 GB/s, distinct buffers 6.4 / 6.5 / 4.1; collectives at np 2 (bcast,
// allreduce, gather, scatter, reduce, 16 KiB-1 MiB) 0.35-0.8x the time
// without direct copies, allgather and alltoall of 256 KiB-1 MiB 1.0-1.3x.
// The EPYC VM above agreed. So on AMD CPUs direct copies are off by
// default (Config.ShmDirect) while every rank has a core; with more ranks
// than cores they stay on, as each of the ring's hops then waits for the
// other rank to be scheduled (np 4 on that Zen 3 VM, direct against ring:
// alltoall 256 KiB-1 MiB 0.6-0.7x the time, reduce, gather and scatter of
// 16-64 KiB 0.7-0.9x).
//
// Cancelling a send whose KindRTSMem is out cannot simply return: the receiver
// may be copying its buffer at that moment. The cancel sends KindRevoke
// instead; a receiver that still holds the announcement unmatched drops it and
// answers a KindCTS of length 0, which completes the send with the context's
// error; one that matched it already answers KindDone or KindCTS as usual, and
// the send succeeds (its cancel came too late, as MPI allows).

// Probe results of a link (shmLink.direct).
const (
	directUnknown int32 = iota
	directOn
	directOff
)

// directRead reports whether messages to the peer may be announced with
// KindRTSMem: direct copies are on, and this rank could read the peer's
// memory (the first call per link probes it).
func (l *shmLink) directRead() bool {
	switch l.direct.Load() {
	case directOn:
		return true
	case directOff:
		return false
	}
	if !l.e.cfg.ShmDirect {
		l.direct.Store(directOff)
		return false
	}
	l.wmu.Lock()
	if !l.wdead { // the segment is mapped
		l.loadPeer()
	}
	l.wmu.Unlock()
	pid, base := l.peerPid.Load(), l.peerBase.Load()
	if pid == 0 {
		return false // the peer has not published itself yet: ask again later
	}
	var word [8]byte
	state := directOn
	if err := readProcess(int(pid), base, word[:]); err != nil {
		l.e.debugf("comm: rank %d: no direct copies with rank %d (process %d): %v", l.e.rank, l.peer, pid, err)
		state = directOff
	}
	l.direct.CompareAndSwap(directUnknown, state)
	return l.direct.Load() == directOn
}

// loadPeer caches the process id and segment address the peer published in
// the ring it writes. The caller holds rmu or wmu on a link not yet closed, so
// the segment is mapped.
func (l *shmLink) loadPeer() {
	if l.peerPid.Load() != 0 {
		return
	}
	rx := l.shm.rx
	if pid := rx.pid.Load(); pid != 0 {
		l.peerBase.Store(rx.base.Load())
		l.peerPid.Store(pid)
	}
}

// sendDirect announces r, a rendezvous send over shared memory link l, with
// KindRTSMem. The caller registered r in rdvSend.
func (e *engine) sendDirect(l link, r *Request) error {
	h := wire.Header{Kind: wire.KindRTSMem, Ctx: r.cid, Src: int32(e.rank), Tag: int32(r.tag), ID: r.rdv.id, Length: wire.RTSMemSize}
	if !r.sync && len(r.payload) <= e.cfg.ShmEagerLimit {
		h.Flags = wire.FlagBuffer // sent directly only because direct copies lowered the eager limit
	}
	pl := make([]byte, wire.RTSMemSize)
	wire.PutRTSMem(pl, uint64(len(r.payload)), uint64(uintptr(unsafe.Pointer(unsafe.SliceData(r.payload)))))
	err := l.sendFrame(&h, pl)
	e.mu.Lock()
	r.rdv.announced = err == nil
	revoke := r.rdv.revoking && r.rdv.announced
	e.mu.Unlock()
	if revoke { // cancelled while the announcement went out
		e.revoke(r)
	}
	return err
}

// revoke withdraws the announcement of r, a cancelled send, from its receiver.
func (e *engine) revoke(r *Request) {
	h := wire.Header{Kind: wire.KindRevoke, Ctx: r.cid, Src: int32(e.rank), Tag: int32(r.tag), ID: r.rdv.id}
	l, err := e.link(r.dst)
	if err == nil {
		err = l.sendFrame(&h, nil)
	}
	if err != nil {
		e.failRdvSend(r, err)
	}
}

// onRTSMem handles a KindRTSMem announcement whose payload was read.
func (e *engine) onRTSMem(h *wire.Header, payload []byte) error {
	size, addr, err := wire.RTSMem(payload, e.lim)
	err = withLimitKnob(err)
	if err != nil {
		return err
	}
	if addr == 0 {
		return fmt.Errorf("%w: rts-mem at address 0", wire.ErrBadPayload)
	}
	// The frame came through the peer's ring, which is mapped while it is
	// read: learn the peer's process now, for the copy that may come later.
	if sl := e.shmLinkTo(int(h.Src)); sl != nil {
		sl.loadPeer()
	}
	e.onAnnounce(h, int(size), addr)
	return nil
}

// onDone completes the send whose bytes the receiver copied (or dropped).
func (e *engine) onDone(h *wire.Header) {
	e.mu.Lock()
	r := e.rdvSend[h.ID]
	delete(e.rdvSend, h.ID)
	if r != nil {
		r.state = stMatched
	}
	e.mu.Unlock()
	if r == nil {
		e.cfg.logf("comm: rank %d: done for unknown send %d from rank %d", e.rank, h.ID, h.Src)
		return
	}
	r.complete(Status{Count: len(r.payload)}, nil)
}

// onRevoke drops the announcement of a cancelled send if no receive has
// matched it yet, and tells the sender so.
func (e *engine) onRevoke(h *wire.Header) {
	src := int(h.Src)
	e.mu.Lock()
	q := e.queue(h.Ctx)
	var found *inMsg
	for m := q.oldest; m != nil; m = m.next {
		if m.rts && m.src == src && m.id == h.ID {
			found = m
			break
		}
	}
	if found != nil {
		q.remove(found)
	}
	e.mu.Unlock()
	if found != nil {
		e.sendCtl(src, wire.Header{Kind: wire.KindCTS, Ctx: h.Ctx, Src: int32(e.rank), Tag: h.Tag, ID: h.ID}, true, nil)
	}
}

// readDirect copies len(dst) bytes at addr in world rank src's process into
// dst. A refusal by the system turns direct copies off on the link.
func (e *engine) readDirect(src int, addr uint64, dst []byte) error {
	sl := e.shmLinkTo(src)
	if sl == nil || sl.peerPid.Load() == 0 {
		return errors.New("no shared memory link")
	}
	err := readPeer(int(sl.peerPid.Load()), addr, dst)
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EACCES) {
		if sl.direct.Swap(directOff) != directOff {
			e.debugf("comm: rank %d: direct copies from rank %d refused: %v", e.rank, src, err)
		}
	}
	return err
}

// shmLinkTo returns the shared memory link to world rank w, or nil.
func (e *engine) shmLinkTo(w int) *shmLink {
	if c := e.peers[w].Load(); c != nil {
		sl, _ := c.link.(*shmLink)
		return sl
	}
	return nil
}

// readPeer is how readDirect copies: readProcess, but tests may make it fail.
var readPeer = readProcess

// remoteIovec is an iovec in another process: its base is not a pointer here.
type remoteIovec struct {
	base uintptr
	len  uint64
}

// The kernel copies a process_vm_readv with the CPU's string move (rep
// movsb), reading the peer's page through the kernel's own mapping of it
// and writing dst. On AMD Zen 3 that copy runs 4-5 times slower when dst's
// offset in its page is a few bytes past the source's (4K aliasing: each
// store looks to the loads that follow like one to their address): a
// 2-core EPYC 7xx3 VM, the two processes of a C ping-pong of
// process_vm_readv, us one way, offsets 0 / 16 / 64 bytes apart: 4 KiB 3.6
// / 6.3 / 4.6, 64 KiB 11.6 / 54 / 10.6, 1 MiB 181 / 867 / 147, and every
// distance from 1 to 31 bytes as slow as 16. SPMD programs hit it as a
// rule: every rank allocates the same buffers in the same order, so a
// receive buffer allocated after the send buffer (malloc puts 16 bytes
// of its own between them) sits 16 bytes past the peer's send buffer
// modulo the page. Go's copy (vector loads and stores) runs at full speed
// at any distance. So a copy whose distance falls in that window goes
// through a bounce buffer placed at the source's own offset, a chunk at a
// time, and copy moves each chunk on while it is in the cache.
const (
	aliasWindow = 64       // distances (dst - src modulo the page) below this bounce
	bounceChunk = 64 << 10 // bytes read at a time into the bounce buffer
	pageSize    = 4096
)

// bounces hold bounce buffers: a chunk and a page of slack to place it.
var bounces = sync.Pool{New: func() any { b := make([]byte, bounceChunk+pageSize); return &b }}

// readProcess copies len(dst) bytes at addr in process pid into dst with
// process_vm_readv, through a bounce buffer when dst's distance to addr
// modulo the page makes the kernel's copy slow (see aliasWindow).
func readProcess(pid int, addr uint64, dst []byte) error {
	if d := (uint64(uintptr(unsafe.Pointer(unsafe.SliceData(dst)))) - addr) % pageSize; d == 0 || d >= aliasWindow || len(dst) < aliasWindow {
		return readv(pid, addr, dst)
	}
	bp := bounces.Get().(*[]byte)
	defer bounces.Put(bp)
	b := *bp
	off := (addr - uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))) % pageSize
	chunk := b[off : off+bounceChunk]
	for len(dst) > 0 {
		k := min(len(dst), len(chunk))
		if err := readv(pid, addr, chunk[:k]); err != nil {
			return err
		}
		copy(dst, chunk[:k])
		dst, addr = dst[k:], addr+uint64(k)
	}
	return nil
}

// readv copies len(dst) bytes at addr in process pid into dst with
// process_vm_readv.
func readv(pid int, addr uint64, dst []byte) error {
	for len(dst) > 0 {
		local := syscall.Iovec{Base: unsafe.SliceData(dst)}
		local.SetLen(len(dst))
		remote := remoteIovec{base: uintptr(addr), len: uint64(len(dst))}
		n, _, errno := syscall.Syscall6(unix.SYS_PROCESS_VM_READV, uintptr(pid),
			uintptr(unsafe.Pointer(&local)), 1, uintptr(unsafe.Pointer(&remote)), 1, 0)
		runtime.KeepAlive(dst)
		switch {
		case errno == syscall.EINTR:
			continue
		case errno != 0:
			return fmt.Errorf("process_vm_readv: %w", errno)
		case n == 0:
			return errors.New("process_vm_readv: no progress")
		}
		dst, addr = dst[n:], addr+uint64(n)
	}
	return nil
}
