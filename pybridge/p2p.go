package main

import "C"

import (
	"context"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/pmrun/pmrun/comm"
)

// Conventions of the exported functions: a handle or count is an int64; a
// buffer is a pointer and a byte count; a status is four int64s (source, tag,
// count in bytes, error class); the result is 0 on success or minus an error
// handle that pm_error explains. Blocking calls are entered with the
// interpreter's lock released (ctypes does so), so other Python threads run.

func putStatus(p unsafe.Pointer, st comm.Status, err error) {
	if p == nil {
		return
	}
	s := unsafe.Slice((*int64)(p), 4)
	s[0], s[1], s[2] = int64(st.Source), int64(st.Tag), int64(st.Count)
	s[3] = 0
	if err != nil {
		s[3] = int64(class(err))
	}
}

//export pm_error
func pm_error(id int64, buf unsafe.Pointer, capacity int64, cls *int64) int64 {
	err, ok := errs.take(id)
	if !ok {
		err = errors.New("unknown error")
	}
	*cls = int64(class(err))
	msg := describe(err)
	return int64(copy(mem(buf, capacity), msg))
}

//export pm_init
func pm_init(world, self *int64) int64 {
	// Every call arrives on a Python thread, locked to its goroutine.
	if os.Getenv("PMRUN_LOCKED_CALLERS") == "" {
		os.Setenv("PMRUN_LOCKED_CALLERS", "on")
	}
	gcFloor()
	c, err := comm.World()
	if err != nil {
		return fail(err)
	}
	*world = comms.put(c)
	*self = comms.put(c.Self())
	return 0
}

//export pm_finalize
func pm_finalize(world int64) int64 {
	c, err := commOf(world)
	if err != nil {
		return fail(err)
	}
	return fail(c.Close())
}

//export pm_abort
func pm_abort(h int64, code int64, msg *C.char) {
	c, err := commOf(h)
	if err != nil {
		c, _ = comm.World()
	}
	c.Abort(int(code), C.GoString(msg))
}

//export pm_comm_info
func pm_comm_info(h int64, rank, size *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	*rank, *size = int64(c.Rank()), int64(c.Size())
	return 0
}

// pm_comm_world_ranks writes the world rank of each rank of h (its group)
// into out, room for k int64s.
//
//export pm_comm_world_ranks
func pm_comm_world_ranks(h int64, out unsafe.Pointer, k int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	if k < int64(c.Size()) || out == nil {
		return fail(fmt.Errorf("room for %d ranks, the group has %d: %w", k, c.Size(), errRecvShort))
	}
	s := unsafe.Slice((*int64)(out), c.Size())
	for r := range s {
		s[r] = int64(c.WorldRank(r))
	}
	return 0
}

// pm_comm_node writes the node name of rank r of h; it returns its length.
//
//export pm_comm_node
func pm_comm_node(h, r int64, buf unsafe.Pointer, capacity int64) int64 {
	c, err := commOf(h)
	if err != nil || r < 0 || r >= int64(c.Size()) {
		return 0
	}
	return int64(copy(mem(buf, capacity), c.Node(int(r))))
}

func newComm(c *comm.Comm, err error, out *int64) int64 {
	if err != nil {
		return fail(err)
	}
	*out = 0
	if c != nil {
		*out = comms.put(c)
	}
	return 0
}

//export pm_comm_dup
func pm_comm_dup(h int64, out *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	d, err := c.Dup(bg)
	return newComm(d, err, out)
}

// pm_comm_split gives 0 in out for a rank that passed a negative color.
//
//export pm_comm_split
func pm_comm_split(h, color, key int64, out *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	if color < 0 {
		color = comm.Undefined
	}
	s, err := c.Split(bg, int(color), int(key))
	return newComm(s, err, out)
}

//export pm_comm_split_node
func pm_comm_split_node(h int64, out *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	s, err := c.SplitByNode(bg)
	return newComm(s, err, out)
}

//export pm_comm_create_group
func pm_comm_create_group(h int64, ranks unsafe.Pointer, n int64, out *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	if n < 0 || (n > 0 && ranks == nil) {
		return fail(fmt.Errorf("%d ranks: %w", n, errBadCount))
	}
	members := make([]int, n)
	for i, r := range unsafe.Slice((*int64)(ranks), n) {
		members[i] = int(r)
	}
	g, err := c.CreateGroup(bg, members)
	return newComm(g, err, out)
}

//export pm_comm_free
func pm_comm_free(h int64) int64 {
	flushPosts() // a lazy receive on it completes as if posted before (see posts.go)
	c, ok := comms.take(h)
	if !ok {
		return fail(errBadHandle)
	}
	if w, _ := comm.World(); c == w {
		comms.put(c) // the world is freed by pm_finalize only
		return 0
	}
	return fail(c.Close())
}

// sendOn starts a send, synchronous (MPI_Ssend: done once a receive matched)
// when sync is not 0.
func sendOn(ctx context.Context, c *comm.Comm, dst, tag int64, data []byte, sync int64) *comm.Request {
	if sync != 0 {
		return c.Issend(ctx, int(dst), int(tag), data)
	}
	return c.Isend(ctx, int(dst), int(tag), data)
}

//export pm_send
func pm_send(h, dst, tag int64, buf unsafe.Pointer, n, sync int64) int64 {
	c, err := commToSend(h, dst, n, sync)
	if err != nil {
		return fail(err)
	}
	return fail(sendNow(c, dst, tag, mem(buf, n), sync))
}

// sendNow is a blocking send (MPI_Send, or MPI_Ssend with sync): through
// Comm.Send, whose short path writes a small message with no request to
// make and wait for.
func sendNow(c *comm.Comm, dst, tag int64, data []byte, sync int64) error {
	if sync != 0 {
		return c.Ssend(bg, int(dst), int(tag), data)
	}
	return c.Send(bg, int(dst), int(tag), data)
}

// pm_sendv sends the k buffers as one message (an object's pickle and its
// out-of-band buffers); they are gathered into one Go buffer first.
//
//export pm_sendv
func pm_sendv(h, dst, tag int64, bufs, lens unsafe.Pointer, k, sync int64) int64 {
	var data []byte
	if k == 1 { // one part (a pickle without out-of-band buffers): sent from where it is
		data = mem(*(*unsafe.Pointer)(bufs), *(*int64)(lens))
	} else {
		data = gather(bufs, lens, k)
	}
	c, err := commToSend(h, dst, int64(len(data)), sync)
	if err != nil {
		return fail(err)
	}
	return fail(sendNow(c, dst, tag, data, sync))
}

// pieces views the k buffers (bufs, lens) without copying them.
func pieces(bufs, lens unsafe.Pointer, k int64) [][]byte {
	ps := unsafe.Slice((*unsafe.Pointer)(bufs), int(k))
	ns := unsafe.Slice((*int64)(lens), int(k))
	out := make([][]byte, k)
	for i, p := range ps {
		out[i] = mem(p, ns[i])
	}
	return out
}

func gather(bufs, lens unsafe.Pointer, k int64) []byte {
	ps := unsafe.Slice((*unsafe.Pointer)(bufs), int(k))
	ns := unsafe.Slice((*int64)(lens), int(k))
	total := int64(0)
	for _, n := range ns {
		total += n
	}
	out := make([]byte, 0, total)
	for i, p := range ps {
		out = append(out, mem(p, ns[i])...)
	}
	return out
}

// posted stores the handle of a request just started, or, when its
// arguments were refused (a bad rank or tag), reports that at the call, as
// MPI_Isend and MPI_Irecv do. Errors of the operation itself (a truncated
// message, a lost peer) are the wait's to report.
func posted(r *comm.Request, out *int64) int64 {
	if r.Completed() { // done at once (not after a Test's poll of the links)
		if _, _, err := r.Test(); errors.Is(err, comm.ErrInvalidRank) || errors.Is(err, comm.ErrInvalidTag) {
			return fail(err)
		}
	}
	*out = requests.put(r)
	return 0
}

// A nonblocking send whose message went out as it started has no request:
// its handle is reqSent, which Python's requests complete without the
// runtime (with the status Open MPI gives such a send: source PROC_NULL, tag
// ANY_TAG, count 0), as they do a request on PROC_NULL.
//
//pmrun:abi
const reqSent = -1

//export pm_isend
func pm_isend(h, dst, tag int64, buf unsafe.Pointer, n, sync int64, out *int64) int64 {
	c, err := commToSend(h, dst, n, sync)
	if err != nil {
		return fail(err)
	}
	return isendOn(c, dst, tag, mem(buf, n), sync, out)
}

// pm_isend_now sends a nonblocking send's message at once where it need not
// wait (comm.TrySendNow), for a caller that holds the GIL: 1 when it went
// (its request is reqSent), 0 when nothing was sent (pm_isend, without the
// GIL, sends it), or an error.
//
//export pm_isend_now
func pm_isend_now(h, dst, tag int64, buf unsafe.Pointer, n int64) int64 {
	c, err := commToSend(h, dst, n, 0)
	if err != nil {
		return fail(err)
	}
	sent, err := c.TrySendNow(bg, int(dst), int(tag), mem(buf, n))
	if !sent {
		return 0
	}
	if err != nil {
		return fail(err)
	}
	return 1
}

//export pm_isendv
func pm_isendv(h, dst, tag int64, bufs, lens unsafe.Pointer, k, sync int64, out *int64) int64 {
	data := gather(bufs, lens, k)
	c, err := commToSend(h, dst, int64(len(data)), sync)
	if err != nil {
		return fail(err)
	}
	return isendOn(c, dst, tag, data, sync, out)
}

// isendOn starts a nonblocking send: its handle, or reqSent when the
// message went out at once.
func isendOn(c *comm.Comm, dst, tag int64, data []byte, sync int64, out *int64) int64 {
	if sync == 0 {
		if sent, err := c.TrySend(bg, int(dst), int(tag), data); sent {
			*out = reqSent
			return fail(err)
		}
	}
	return posted(sendOn(bg, c, dst, tag, data, sync), out)
}

//export pm_recv
func pm_recv(h, src, tag int64, buf unsafe.Pointer, capacity int64, st unsafe.Pointer) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	s, err := c.RecvInto(bg, int(src), int(tag), mem(buf, capacity))
	putStatus(st, s, err)
	return fail(err)
}

// pm_recv_obj receives a message of unknown size: into buf when it fits
// (result 0), else it leaves the message queued and returns 1 with its status,
// so that Python allocates room and receives it with pm_recv.
//
//export pm_recv_obj
func pm_recv_obj(h, src, tag int64, buf unsafe.Pointer, capacity int64, st unsafe.Pointer) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	s, err := c.Probe(bg, int(src), int(tag))
	if err != nil {
		putStatus(st, s, err)
		return fail(err)
	}
	if int64(s.Count) > capacity {
		putStatus(st, s, nil)
		return 1
	}
	s, err = c.RecvInto(bg, s.Source, s.Tag, mem(buf, capacity))
	putStatus(st, s, err)
	return fail(err)
}

// pm_recv_any receives the next message of unknown size in one match: into
// buf when it fits (result 0; comm's RecvBuf, which allocates nothing for it
// where the message is read as it arrives: a 1 KiB object ping-pong took 2.9
// us one way through a buffer of the message's size copied into buf, 1.9
// after), else it keeps the message as a blob, writes its
// handle into blob and returns 1 (pm_blob_take copies it out). Unlike
// pm_recv_obj it never probes first, and costs a copy where pm_recv_obj would
// receive a large message straight into the caller's memory.
//
//export pm_recv_any
func pm_recv_any(h, src, tag int64, buf unsafe.Pointer, capacity int64, st unsafe.Pointer, blob *int64) int64 {
	*blob = 0
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	data, s, err := c.RecvBuf(bg, int(src), int(tag), mem(buf, capacity))
	putStatus(st, s, err)
	if err != nil {
		return fail(err)
	}
	if int64(len(data)) <= capacity {
		return 0 // in buf
	}
	*blob = blobs.put(data)
	return 1
}

// pm_irecv starts a receive into buf, or, with a nil buf, into a buffer of the
// message's size that pm_req_data copies out once the request is done.
//
//export pm_irecv
func pm_irecv(h, src, tag int64, buf unsafe.Pointer, capacity int64, out *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	var b []byte
	if buf != nil {
		b = mem(buf, capacity)
	}
	return posted(c.Irecv(bg, int(src), int(tag), b), out)
}

//export pm_sendrecv
func pm_sendrecv(h int64, sbuf unsafe.Pointer, sn, dst, stag int64, rbuf unsafe.Pointer, rcap, src, rtag int64, st unsafe.Pointer) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	_, s, err := c.Sendrecv(bg, mem(sbuf, sn), int(dst), int(stag), mem(rbuf, rcap), int(src), int(rtag))
	putStatus(st, s, err)
	return fail(err)
}

//export pm_probe
func pm_probe(h, src, tag int64, st unsafe.Pointer) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	s, err := c.Probe(bg, int(src), int(tag))
	putStatus(st, s, err)
	return fail(err)
}

//export pm_iprobe
func pm_iprobe(h, src, tag int64, flag *int64, st unsafe.Pointer) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	ok, s, err := c.Iprobe(int(src), int(tag))
	*flag = 0
	if ok {
		*flag = 1
		putStatus(st, s, err)
	}
	return fail(err)
}

func requestOf(h int64) (*comm.Request, error) {
	flushPosts()
	r, ok := requests.get(h)
	if !ok || r == nil {
		return nil, errBadHandle
	}
	return r, nil
}

// pm_wait waits for request h; the handle stays valid (for pm_req_data) until
// pm_req_free.
//
//export pm_wait
func pm_wait(h int64, st unsafe.Pointer) int64 {
	r, err := requestOf(h)
	if err != nil {
		return fail(err)
	}
	s, err := r.Wait()
	putStatus(st, s, err)
	return fail(err)
}

//export pm_test
func pm_test(h int64, flag *int64, st unsafe.Pointer) int64 {
	r, err := requestOf(h)
	if err != nil {
		return fail(err)
	}
	done, s, err := r.Test()
	*flag = 0
	if done {
		*flag = 1
		putStatus(st, s, err)
		return fail(err)
	}
	return 0
}

// pm_test_done is Test that, once the request has succeeded, also forgets
// its handle (a failed one keeps it, for pm_wait to report the error).
//
//export pm_test_done
func pm_test_done(h int64, flag *int64, st unsafe.Pointer) int64 {
	rc := pm_test(h, flag, st)
	if rc == 0 && *flag != 0 && *(*int64)(unsafe.Add(st, 24)) == 0 {
		requests.take(h)
	}
	return rc
}

// pm_wait_data waits for a receive posted without a buffer (an object's)
// and writes its status. When it succeeded and its message fits buf, it
// copies the message there and forgets the handle (result 0); a larger one
// leaves the handle, for pm_req_data and pm_req_free (result 1).
//
//export pm_wait_data
func pm_wait_data(h int64, st unsafe.Pointer, buf unsafe.Pointer, capacity int64) int64 {
	r, err := requestOf(h)
	if err != nil {
		return fail(err)
	}
	s, err := r.Wait()
	putStatus(st, s, err)
	if err != nil {
		return fail(err)
	}
	d := r.Data()
	if int64(len(d)) > capacity {
		return 1
	}
	copy(mem(buf, capacity), d)
	requests.take(h)
	return 0
}

// requestsOf resolves n request handles; a 0 handle gives a nil request.
func requestsOf(hs unsafe.Pointer, n int64) ([]*comm.Request, error) {
	flushPosts()
	reqs := make([]*comm.Request, n)
	handles := unsafe.Slice((*int64)(hs), int(n))
	if _, ok := requests.getAll(handles, reqs); !ok {
		return nil, errBadHandle
	}
	for i, r := range reqs {
		if r == nil && handles[i] != 0 { // set apart, never posted (see flushPosts)
			return nil, errBadHandle
		}
	}
	return reqs, nil
}

// pm_waitall waits until the n requests (0 handles are skipped) have all
// completed, making progress on them together; their statuses and errors are
// then taken one by one with pm_wait.
//
//export pm_waitall
func pm_waitall(hs unsafe.Pointer, n int64) int64 {
	reqs, err := requestsOf(hs, n)
	if err != nil {
		return fail(err)
	}
	comm.WaitAll(reqs...)
	return 0
}

// pm_waitall_done is a whole Waitall in one call: it waits for the n
// requests (0 handles are skipped), writes each one's status into sts (4
// words a request, as putStatus) and forgets the handles of those that
// succeeded. It returns how many failed; their handles stay, for pm_wait to
// report the error.
//
//export pm_waitall_done
func pm_waitall_done(hs unsafe.Pointer, n int64, sts unsafe.Pointer) int64 {
	reqs, err := requestsOf(hs, n)
	if err != nil {
		return fail(err)
	}
	comm.WaitAll(reqs...)
	handles := unsafe.Slice((*int64)(hs), int(n))
	failed := int64(0)
	for i, r := range reqs {
		st := unsafe.Add(sts, 32*i)
		if r == nil { // a null request: the empty status
			putStatus(st, comm.Status{Source: comm.AnySource, Tag: comm.AnyTag}, nil)
			continue
		}
		_, s, err := r.Test()
		putStatus(st, s, err)
		if err != nil {
			failed++
			continue
		}
		requests.take(handles[i])
	}
	return failed
}

// pm_testall_done is Testall in one call: when every one of the n requests
// (0 handles are skipped) has completed, it writes 1 into flag and does what
// pm_waitall_done does (statuses into sts, handles of the successes
// forgotten, the number of failures returned); otherwise it writes 0 and
// touches nothing.
//
//export pm_testall_done
func pm_testall_done(hs unsafe.Pointer, n int64, flag *int64, sts unsafe.Pointer) int64 {
	reqs, err := requestsOf(hs, n)
	if err != nil {
		return fail(err)
	}
	// Every request is tested, as MPI_Testall makes progress on all of
	// them: stopping at the first one not done left an exchange's send
	// untested behind its receive, on both ranks, so that neither pushed
	// the data the other waited for (26 ms an exchange of 1 MiB in a
	// Testall loop, until goroutines got the processor).
	all := true
	for _, r := range reqs {
		if done, _, _ := r.Test(); !done {
			all = false
		}
	}
	*flag = 0
	if !all {
		return 0
	}
	*flag = 1
	return pm_waitall_done(hs, n, sts)
}

// pm_waitany waits until one of the n requests completes and writes its index.
//
//export pm_waitany
func pm_waitany(hs unsafe.Pointer, n int64, index *int64, st unsafe.Pointer) int64 {
	reqs, err := requestsOf(hs, n)
	if err != nil {
		return fail(err)
	}
	i, s, err := comm.WaitAny(reqs...)
	*index = int64(i)
	putStatus(st, s, err)
	return fail(err)
}

//export pm_cancel
func pm_cancel(h int64) int64 {
	r, err := requestOf(h)
	if err != nil {
		return fail(err)
	}
	r.Cancel() // a receive; sends and collectives complete as they would
	return 0
}

// pm_req_data copies the data of a finished receive posted without a buffer.
//
//export pm_req_data
func pm_req_data(h int64, buf unsafe.Pointer, capacity int64) int64 {
	r, err := requestOf(h)
	if err != nil {
		return fail(err)
	}
	return int64(copy(mem(buf, capacity), r.Data()))
}

// pm_req_free forgets handle h; a pending operation still completes.
//
//export pm_req_free
func pm_req_free(h int64) {
	flushPosts()
	requests.take(h)
}

// pm_blob_take copies a Go-held result into buf and forgets it.
//
//export pm_blob_take
func pm_blob_take(h int64, buf unsafe.Pointer, capacity int64) int64 {
	b, ok := blobs.take(h)
	if !ok {
		return fail(errBadHandle)
	}
	return int64(copy(mem(buf, capacity), b))
}

func main() {}

// gcBallast raises the heap size below which the collector does not run
// (see gcFloor); it is never touched, so it takes address space, not memory.
var gcBallast []byte

// gcFloor keeps the collector from running every few megabytes of
// allocation in a Python rank. Its Go heap is small (the interpreter holds
// the data), so with GOGC at 100 a cycle started at every 4 MiB of
// requests and small buffers, each a stretch of marking on the rank's one
// processor that a thread waiting for a message has to share. An untouched,
// pointer-free block of gcFloorBytes counts as live heap, so a cycle starts
// once about that much more is allocated; a program with a large live heap
// sees its goal raised by that much only. GOGC set by the user, or off, is
// left alone.
//
// The floor is a trade: each cycle less is a pause less in a latency loop,
// but the memory allocated between cycles is new to the caches. mpi4py's
// osu_latency.py at 0-16 bytes, np 2, 4 rounds alternating (medians):
// 0.58 us with no floor, 0.50 with 16 MiB, 0.54 with 64 MiB (Open MPI
// 0.45); windows of 64 Irecv and 64 Isend, np 1, 5 rounds: Irecv 432,
// 435 and 516 ns, Isend 532, 547 and 603 ns.
func gcFloor() {
	if os.Getenv("GOGC") != "" {
		return
	}
	gcBallast = make([]byte, gcFloorBytes)
}

const gcFloorBytes = 16 << 20
