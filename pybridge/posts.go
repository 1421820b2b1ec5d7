package main

/*
#include "posts.h"
*/
import "C"

import (
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Receives posted lazily. A small nonblocking receive from Python (an Irecv
// of a buffer of at most lazyLimit bytes, or an object's irecv, of any size:
// cap -1) is not posted when it starts: pmrun._fast writes it into pm_posts,
// a list in C memory, under the interpreter's lock and without calling into
// Go, with a handle that pm_req_reserve set apart. When it is the last entry
// at its wait, the wait takes it back and receives the message directly
// (pm_recv, pm_recv_any: one call into Go where the post and the wait were
// two, and no request). Every other call of the runtime that takes a
// communicator or a request posts the list first, in order (flushPosts, from
// commOf, requestOf, requestsOf, pm_req_free, pm_comm_free), and so does a
// send that may depend on it (commToSend), so that no receive, probe, test
// or wait of this process ever sees the messages as though the receive had
// not been started. A small message is sent eagerly whether or not its
// receive is posted, so waiting to post changes no sender's progress.

// lazyLimit bounds the buffers of lazy receives: messages that fit are
// below every eager limit of the defaults (ShmEagerDirect, 8 KiB) and of
// any configuration that keeps them at 4 KiB or more.
const lazyLimit = 4 << 10

// postsLock takes pm_posts' lock, held by a C or Go thread for a few
// instructions (or, in flushPosts, a few posts, which never wait).
func postsLock() {
	l := (*uint32)(unsafe.Pointer(&C.pm_posts.lock))
	for i := 1; !atomic.CompareAndSwapUint32(l, 0, 1); i++ {
		if i%64 == 0 {
			runtime.Gosched()
		}
	}
}

func postsUnlock() { atomic.StoreUint32((*uint32)(unsafe.Pointer(&C.pm_posts.lock)), 0) }

// flushPosts posts the lazy receives of pm_posts, oldest first, each under
// the handle reserved for it.
func flushPosts() {
	n := (*uint32)(unsafe.Pointer(&C.pm_posts.n))
	if atomic.LoadUint32(n) == 0 {
		return
	}
	postsLock()
	defer postsUnlock()
	k := int(atomic.LoadUint32(n))
	for i := range min(k, C.PM_POSTS) {
		p := &C.pm_posts.p[i]
		c, ok := comms.get(int64(p.comm))
		if !ok || c == nil {
			continue // no communicator (pm_comm_free posts the list first): the request stays empty, its wait fails
		}
		var buf []byte // nil: an object's receive, of any size (cap -1)
		if p.cap >= 0 {
			buf = mem(p.buf, int64(p.cap))
		}
		requests.fill(int64(p.req), c.Irecv(bg, int(p.src), int(p.tag), buf))
	}
	atomic.StoreUint32(n, 0)
}

// pm_posts_area is the address of pm_posts (C memory: it never moves); it
// writes the size of its layout into size (for pmrun._fast to check against
// its own) and lazyLimit into limit, or 0 when receives must be posted at
// once (PMRUN_LAZY_RECV=0).
//
//export pm_posts_area
func pm_posts_area(size, limit *int64) int64 {
	*size = int64(unsafe.Sizeof(C.pm_posts))
	*limit = lazyLimit
	if !lazyRecvs() {
		*limit = 0
	}
	return int64(uintptr(unsafe.Pointer(&C.pm_posts)))
}

// pm_req_reserve sets n request handles apart into out, for lazy receives.
//
//export pm_req_reserve
func pm_req_reserve(n int64, out unsafe.Pointer) {
	hs := unsafe.Slice((*int64)(out), int(n))
	for i := range hs {
		hs[i] = requests.put(nil)
	}
}

// lazyRecvs is whether receives may be posted lazily: PMRUN_LAZY_RECV=0
// posts each as it starts.
func lazyRecvs() bool { return os.Getenv("PMRUN_LAZY_RECV") != "0" }
