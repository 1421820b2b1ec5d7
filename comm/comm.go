package comm

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/pmrun/pmrun/internal/insight"
	"github.com/pmrun/pmrun/internal/shm"
)

// Wildcards and special values.
const (
	// AnySource matches a message from any rank.
	AnySource = -1
	// AnyTag matches any user tag (tags >= 0).
	AnyTag = -1
	// Undefined as a Split color leaves the caller out of every new communicator.
	Undefined = -32766
	// TagUB is the largest user tag.
	TagUB = 1<<31 - 1
)

// Tags below -1 are reserved for libraries built on comm (package collective uses
// them); user code sends and receives on tags >= 0 only, and AnyTag never matches
// a reserved tag.
const (
	tagAgree = -2 // communicator creation
	tagGroup = -3 // CreateGroup's agreement among the members only
)

// selfCtx is the context of every rank's Self communicator: only the rank itself
// sends on it, so one context serves all of them.
const selfCtx = 0

// Comm is a communicator: an ordered group of ranks and a context that keeps its
// traffic apart from every other communicator's. Its methods are safe for
// concurrent use by several goroutines; messages sent concurrently to one rank with
// one tag have no defined order among themselves.
type Comm struct {
	e     *engine
	cid   uint32
	rank  int
	size  int
	group []int // comm rank -> world rank
	inv   []int // world rank -> comm rank, -1 if absent
	nodes int   // distinct nodes the ranks run on

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	world     bool     // the world communicator owns the engine
	rdv       launcher // world only: the launcher's control connection, if any

	slotsOnce sync.Once
	slots     *shm.Slots // shared area for small collectives (see sharedSlots)
	// slotsMapped is slots once mapped and agreed on, for the calls that
	// do not go through slotsOnce (mappedSlots).
	slotsMapped atomic.Pointer[shm.Slots]
	slotsOff    atomic.Bool // not every member could map it

	attrs attrs  // values libraries cache on c (see Attr)
	async asyncs // goroutines started by Async, waited for by Close

	// The collective under way on c, for the stuck-job account (see
	// BeginCollective): published without a lock, as a collective call's
	// cost is counted in nanoseconds.
	coll      atomic.Pointer[collState]
	collDepth atomic.Int32 // nested calls under way
	colled    atomic.Bool  // c is in its engine's diagnostics.colled
}

// launcher is the rank's control connection to whoever launched it.
type launcher interface {
	Abort(code int, msg string, lost ...int) error
	Close() error
}

func newComm(e *engine, cid uint32, group []int) *Comm {
	c := &Comm{e: e, cid: cid, size: len(group), group: group, inv: make([]int, e.size)}
	for i := range c.inv {
		c.inv[i] = -1
	}
	seen := make(map[string]bool)
	for r, w := range group {
		c.inv[w] = r
		if w == e.rank {
			c.rank = r
		}
		if w < len(e.nodes) {
			seen[e.nodes[w]] = true
		}
	}
	c.nodes = max(len(seen), 1)
	return c
}

// Nodes returns the number of distinct nodes (hosts or containers) the ranks
// of c run on.
func (c *Comm) Nodes() int { return c.nodes }

// Rank returns the calling process's rank in c.
func (c *Comm) Rank() int { return c.rank }

// Size returns the number of ranks in c.
func (c *Comm) Size() int { return c.size }

// Node returns the name of the node (host or container) that rank runs on.
func (c *Comm) Node(rank int) string {
	if rank < 0 || rank >= c.size {
		return ""
	}
	return c.e.nodes[c.group[rank]]
}

// PeerAddr returns the network address on which rank accepts connections from its
// peers, or "" for ranks connected in-process. It is meant for diagnostics.
func (c *Comm) PeerAddr(rank int) string {
	if rank < 0 || rank >= c.size || c.e.addrs == nil {
		return ""
	}
	return c.e.addrs[c.group[rank]]
}

// MaxMessage returns the longest message c sends or receives
// (Config.MaxMessage): a bound for lengths that peers announce.
func (c *Comm) MaxMessage() int { return c.e.cfg.MaxMessage }

// WorldRank translates a rank of c into the corresponding world rank.
func (c *Comm) WorldRank(rank int) int {
	if rank < 0 || rank >= c.size {
		return -1
	}
	return c.group[rank]
}

func (c *Comm) commRank(world int) int {
	if world < 0 || world >= len(c.inv) {
		return world
	}
	return c.inv[world]
}

func (c *Comm) check(op string, rank, tag int, send bool) error {
	if c.closed.Load() {
		return &RankError{Op: op, Rank: rank, Tag: tag, Err: ErrClosed}
	}
	if rank < 0 || rank >= c.size {
		if send || rank != AnySource {
			return &RankError{Op: op, Rank: rank, Tag: tag, Err: fmt.Errorf("%w: %d not in [0, %d)", ErrInvalidRank, rank, c.size)}
		}
	}
	if tag == AnyTag && send || tag < AnyTag && tag < -1<<30 {
		return &RankError{Op: op, Rank: rank, Tag: tag, Err: ErrInvalidTag}
	}
	return nil
}

// Isend starts sending data to rank dst with tag and returns at once. data must not
// be modified until the request completes. Small messages complete as soon as they
// are written; large ones once the receiver has taken the data.
func (c *Comm) Isend(ctx context.Context, dst, tag int, data []byte) *Request {
	return c.isend(ctx, dst, tag, data, false)
}

// TrySend sends data to rank dst with tag at once when it can go out
// without a request: a message of the eager size, to a rank already
// connected, written now (it may wait for room in the link, as Send does).
// sent reports whether it went, and err is then the outcome Send would
// give; when sent is false nothing was sent, and Isend or Send sends it. It
// serves bindings whose nonblocking sends mostly complete as they start
// (MPI_Isend of a small message), which then make no request.
func (c *Comm) TrySend(ctx context.Context, dst, tag int, data []byte) (sent bool, err error) {
	if c.e.diag.ins != nil { // traced: Isend records the send
		return false, nil
	}
	return c.sendEager(ctx, dst, tag, data, true)
}

// TrySendNow is TrySend where it need not wait: it also sends nothing
// (sent false) when the message would wait for room in the link, or goes
// through a link whose writes may block (a socket). It serves callers that
// must not wait while they hold something others need (the Python
// bridge, the interpreter's lock).
func (c *Comm) TrySendNow(ctx context.Context, dst, tag int, data []byte) (sent bool, err error) {
	if c.e.diag.ins != nil {
		return false, nil
	}
	return c.sendEager(ctx, dst, tag, data, false)
}

func (c *Comm) isend(ctx context.Context, dst, tag int, data []byte, sync bool) *Request {
	if !sync && c.e.diag.ins == nil {
		// A small message goes out now (as the full path below would send
		// it), and its request is born complete.
		if done, err := c.sendEager(ctx, dst, tag, data, true); done {
			return c.sent(dst, tag, len(data), err)
		}
	}
	r := newRequest(ctx, c, kindSend)
	r.peer, r.tag, r.cid, r.payload, r.sync = dst, tag, c.cid, data, sync
	if err := c.check("send", dst, tag, true); err != nil {
		r.complete(Status{}, err)
		return r
	}
	if len(data) > c.e.cfg.MaxMessage {
		r.complete(Status{}, &RankError{Op: "send", Rank: dst, Tag: tag,
			Err: fmt.Errorf("%w: %d bytes, more than %d", ErrMessageLarge, len(data), c.e.cfg.MaxMessage)})
		return r
	}
	r.dst = c.group[dst]
	if ins := c.e.diag.ins; ins != nil {
		ins.sent(r.dst, len(data))
	}
	r.needs = true
	r.watch()
	c.e.need(r.dst, 1)
	c.e.send(r)
	return r
}

// sent is the request of a send that completed as it started: no demand
// to count.
func (c *Comm) sent(dst, tag, n int, err error) *Request {
	r := &Request{c: c, kind: kindSend, ctx: context.Background(), peer: dst, tag: tag,
		st: Status{Count: n}, err: err, state: stMatched}
	r.fin.Store(true)
	r.ready.Store(true)
	return r
}

// closedDone is the done channel of the requests that completed before
// anyone asked for their channel.
var closedDone = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// Issend starts a synchronous send: it completes only once a matching receive
// has been posted at dst (MPI_Issend), whatever the size of data.
func (c *Comm) Issend(ctx context.Context, dst, tag int, data []byte) *Request {
	return c.isend(ctx, dst, tag, data, true)
}

// Ssend is the blocking form of Issend.
func (c *Comm) Ssend(ctx context.Context, dst, tag int, data []byte) error {
	_, err := c.Issend(ctx, dst, tag, data).Wait()
	return err
}

// Send sends data to rank dst with tag; it blocks until data may be reused.
func (c *Comm) Send(ctx context.Context, dst, tag int, data []byte) error {
	if ins := c.e.diag.ins; ins != nil {
		return ins.send(ctx, c, dst, tag, data)
	}
	if done, err := c.sendEager(ctx, dst, tag, data, true); done {
		return err
	}
	_, err := c.Isend(ctx, dst, tag, data).wait()
	return err
}

// Irecv starts a receive from rank src (or AnySource) with tag (or AnyTag). With a
// nil buf the message is received into a new buffer, returned by Request.Data;
// otherwise into buf, and a larger message fails with ErrTruncated.
func (c *Comm) Irecv(ctx context.Context, src, tag int, buf []byte) *Request {
	r := newRequest(ctx, c, kindRecv)
	r.peer, r.tag, r.cid, r.buf = src, tag, c.cid, buf
	if buf == nil {
		r.buf = nil
	}
	if err := c.check("recv", src, tag, false); err != nil {
		r.complete(Status{}, err)
		return r
	}
	r.src = AnySource
	if src != AnySource {
		r.src = c.group[src]
	}
	if ins := c.e.diag.ins; ins != nil {
		r.t0 = ins.now()
	}
	r.needs = true
	r.watch()
	c.e.need(r.src, 1)
	c.e.postRecv(r)
	return r
}

// Recv receives a message from rank src (or AnySource) with tag (or AnyTag) into a
// new buffer and returns it with the message's status.
func (c *Comm) Recv(ctx context.Context, src, tag int) ([]byte, Status, error) {
	return c.RecvBuf(ctx, src, tag, nil)
}

// RecvBuf is Recv for a message of a size the caller does not know, with
// memory it may reuse: the message lands in buf when it fits (the result is
// then buf[:n]; with len(buf) a capacity), else in a new buffer, as with
// Recv. A loop that receives messages of varying size into one buffer then
// allocates only for those that outgrow it.
func (c *Comm) RecvBuf(ctx context.Context, src, tag int, buf []byte) ([]byte, Status, error) {
	data, st, r, done, err := c.recvNow(ctx, src, tag, buf, true)
	if done {
		return data, st, err
	}
	if r == nil {
		r = c.Irecv(ctx, src, tag, nil)
	}
	st, err = r.waitAs("recv")
	if err != nil {
		return nil, st, err
	}
	if buf != nil && len(r.data) <= len(buf) {
		// The full path received it into memory of its own (a receive
		// posted without a buffer takes any size).
		return buf[:copy(buf, r.data)], st, nil
	}
	return r.data, st, nil
}

// RecvInto receives a message into buf. A message larger than buf fails with an
// error wrapping ErrTruncated (buf then holds its first len(buf) bytes).
func (c *Comm) RecvInto(ctx context.Context, src, tag int, buf []byte) (Status, error) {
	if buf == nil {
		buf = []byte{}
	}
	_, st, r, done, err := c.recvNow(ctx, src, tag, buf, false)
	if done {
		return st, err
	}
	if r == nil {
		r = c.Irecv(ctx, src, tag, buf)
	}
	return r.waitAs("recv")
}

// Sendrecv sends data to dst and receives from src at the same time, so that
// pairwise exchanges cannot deadlock. The message is received into recvBuf, or
// into a new buffer when recvBuf is nil; the received bytes are returned.
func (c *Comm) Sendrecv(ctx context.Context, data []byte, dst, sendTag int, recvBuf []byte, src, recvTag int) ([]byte, Status, error) {
	if ins := c.e.diag.ins; ins != nil {
		return ins.sendrecv(ctx, c, data, dst, sendTag, recvBuf, src, recvTag)
	}
	return c.sendrecv(ctx, data, dst, sendTag, recvBuf, src, recvTag)
}

func (c *Comm) sendrecv(ctx context.Context, data []byte, dst, sendTag int, recvBuf []byte, src, recvTag int) ([]byte, Status, error) {
	// A send that goes at once (sendEager: it never waits for the
	// receiver, and a full ring makes it read the peer meanwhile) and then
	// a blocking receive, with its own short path: no request to make
	// (mpi4py's Sendrecv of 8 bytes from Python made three, and the Go
	// collector ran every 2300 calls).
	if done, err := c.sendEager(ctx, dst, sendTag, data, true); done {
		if err != nil {
			return nil, Status{}, err
		}
		if recvBuf == nil {
			return c.Recv(ctx, src, recvTag)
		}
		st, err := c.RecvInto(ctx, src, recvTag, recvBuf)
		if err != nil {
			return nil, st, err
		}
		return recvBuf[:min(st.Count, len(recvBuf))], st, nil
	}
	rr := c.Irecv(ctx, src, recvTag, recvBuf)
	sr := c.Isend(ctx, dst, sendTag, data)
	var serr error
	if sr != nil {
		_, serr = sr.wait()
	}
	if serr != nil {
		// The receive will not be answered on account of this call
		// (a bad destination, say): withdraw it, unless a message is
		// already arriving into it.
		c.e.withdraw(rr, serr)
	}
	st, rerr := rr.wait()
	if rerr != nil {
		return nil, st, rerr
	}
	if serr != nil {
		return nil, st, serr
	}
	return rr.Data(), st, nil
}

// Probe blocks until a message from src with tag can be received and returns its
// status without receiving it.
func (c *Comm) Probe(ctx context.Context, src, tag int) (Status, error) {
	if err := c.check("probe", src, tag, false); err != nil {
		return Status{}, err
	}
	_, st, err := c.e.probe(ctx, c, c.worldOrAny(src), tag, true)
	if err != nil {
		return st, &RankError{Op: "probe", Rank: src, Tag: tag, Err: err}
	}
	return st, nil
}

// Iprobe reports whether a message from src with tag can be received now.
func (c *Comm) Iprobe(src, tag int) (bool, Status, error) {
	if err := c.check("iprobe", src, tag, false); err != nil {
		return false, Status{}, err
	}
	ok, st, err := c.e.probe(context.Background(), c, c.worldOrAny(src), tag, false)
	if err != nil {
		return false, st, &RankError{Op: "iprobe", Rank: src, Tag: tag, Err: err}
	}
	return ok, st, nil
}

func (c *Comm) worldOrAny(src int) int {
	if src == AnySource {
		return AnySource
	}
	return c.group[src]
}

// allgatherInts exchanges a few ints with every rank of c (a collective used to
// create communicators); the result is indexed by rank.
func (c *Comm) allgatherInts(ctx context.Context, vals ...int64) ([][]int64, error) {
	mine := make([]byte, 8*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint64(mine[8*i:], uint64(v))
	}
	out := make([][]int64, c.size)
	out[c.rank] = vals
	reqs := make([]*Request, 0, 2*c.size)
	bufs := make([][]byte, c.size)
	for p := range c.size {
		if p == c.rank {
			continue
		}
		bufs[p] = make([]byte, len(mine))
		reqs = append(reqs, c.Irecv(ctx, p, tagAgree, bufs[p]), c.Isend(ctx, p, tagAgree, mine))
	}
	if _, err := WaitAll(reqs...); err != nil {
		return nil, err
	}
	for p, b := range bufs {
		if p == c.rank {
			continue
		}
		out[p] = make([]int64, len(vals))
		for i := range vals {
			out[p][i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
		}
	}
	return out, nil
}

// create agrees with the other ranks of c on a fresh context id and gathers each
// rank's color and key. It is collective over c.
func (c *Comm) create(ctx context.Context, color, key int) (*Comm, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	var all [][]int64
	cid, err := c.newContext(func(proposal int64) (int64, error) {
		var err error
		if all, err = c.allgatherInts(ctx, int64(color), int64(key), proposal); err != nil {
			return 0, err
		}
		agreed := int64(0)
		for _, v := range all {
			agreed = agreeOn(agreed, v[2])
		}
		return agreed, nil
	})
	if err != nil {
		return nil, fmt.Errorf("comm: creating communicator: %w", err)
	}
	if color < 0 {
		return nil, nil
	}
	var members []int // ranks of c with my color
	for r, v := range all {
		if v[0] == int64(color) {
			members = append(members, r)
		}
	}
	slices.SortStableFunc(members, func(a, b int) int {
		return cmp.Or(cmp.Compare(all[a][1], all[b][1]), cmp.Compare(a, b))
	})
	group := make([]int, len(members))
	for i, r := range members {
		group[i] = c.group[r]
	}
	return newComm(c.e, cid, group), nil
}

// Self returns a communicator holding only this rank (MPI_COMM_SELF). It is
// local: no other rank takes part.
func (c *Comm) Self() *Comm {
	return newComm(c.e, selfCtx, []int{c.e.rank})
}

// CreateGroup returns a communicator of the ranks of c listed in ranks, in that
// order (MPI_Comm_create_group). Only those ranks call it, each with the same
// list; the others go on undisturbed. A rank not in the list gets an error.
func (c *Comm) CreateGroup(ctx context.Context, ranks []int) (*Comm, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	me := slices.Index(ranks, c.rank)
	if me < 0 {
		return nil, fmt.Errorf("comm: CreateGroup: rank %d is not in the group %v", c.rank, ranks)
	}
	group := make([]int, len(ranks))
	for i, r := range ranks {
		if r < 0 || r >= c.size || slices.Index(ranks, r) != i {
			return nil, fmt.Errorf("comm: CreateGroup: group %v: rank %d is out of range or repeated (size %d)", ranks, r, c.size)
		}
		group[i] = c.group[r]
	}
	// The members agree on a proposal: the lowest-ranked member gathers them
	// and answers.
	cid, err := c.newContext(func(proposal int64) (int64, error) {
		var buf [8]byte
		leader := ranks[0]
		if c.rank != leader {
			binary.LittleEndian.PutUint64(buf[:], uint64(proposal))
			if err := c.Send(ctx, leader, tagGroup, buf[:]); err != nil {
				return 0, err
			}
			_, err := c.RecvInto(ctx, leader, tagGroup, buf[:])
			return int64(binary.LittleEndian.Uint64(buf[:])), err
		}
		for _, r := range ranks[1:] {
			if _, err := c.RecvInto(ctx, r, tagGroup, buf[:]); err != nil {
				return 0, err
			}
			proposal = agreeOn(proposal, int64(binary.LittleEndian.Uint64(buf[:])))
		}
		binary.LittleEndian.PutUint64(buf[:], uint64(proposal))
		for _, r := range ranks[1:] {
			if err := c.Send(ctx, r, tagGroup, buf[:]); err != nil {
				return 0, err
			}
		}
		return proposal, nil
	})
	if err != nil {
		return nil, fmt.Errorf("comm: CreateGroup: %w", err)
	}
	return newComm(c.e, cid, group), nil
}

// newContext picks the context id of a communicator being created from c.
// agree exchanges this rank's proposal with the other members and returns
// what they agreed on, by agreeOn: -1 when some member passed.
//
// Creations may run at once on different goroutines (on different parents:
// those on one parent come in the same order on every rank), so proposing a
// rank's next free id is not enough: two creations would both propose it and
// agree on the same id. A rank lets one creation at a time propose, the
// pending one with the lowest parent id once no round is under way; the others
// pass, and every member retries until a round in which all proposed. The
// pending creation with the lowest parent id thus succeeds on every member
// after at most one failed round, and two creations that share a member never
// get the same id there, since each round that succeeds moves the member's
// next free id past the one agreed.
func (c *Comm) newContext(agree func(proposal int64) (int64, error)) (uint32, error) {
	e := c.e
	e.mu.Lock()
	e.creating = append(e.creating, c.cid)
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		i := slices.Index(e.creating, c.cid)
		e.creating = slices.Delete(e.creating, i, i+1)
		e.mu.Unlock()
	}()
	for {
		e.mu.Lock()
		mine := !e.proposing && c.cid == slices.Min(e.creating)
		proposal := int64(-1)
		if mine {
			e.proposing, proposal = true, int64(e.nextCtx)
		}
		e.mu.Unlock()
		agreed, err := agree(proposal)
		if mine {
			e.mu.Lock()
			e.proposing = false
			if err == nil && agreed >= 0 {
				e.nextCtx = max(e.nextCtx, uint32(agreed)+1)
			}
			e.mu.Unlock()
		}
		if err != nil || agreed >= 0 {
			return uint32(agreed), err
		}
		runtime.Gosched() // let the creation that proposes here run
	}
}

// agreeOn folds a member's proposal into the agreement so far: the largest
// proposal, or -1 once a member passed.
func agreeOn(agreed, proposal int64) int64 {
	if agreed < 0 || proposal < 0 {
		return -1
	}
	return max(agreed, proposal)
}

// Dup returns a communicator with the same ranks as c and its own context: messages
// on the duplicate never match receives on c. It is collective over c.
func (c *Comm) Dup(ctx context.Context) (*Comm, error) {
	return c.create(ctx, 0, c.rank)
}

// Split partitions c by color: ranks passing the same color form a new
// communicator, ordered by key and then by their rank in c. A negative color (such
// as Undefined) returns a nil communicator. It is collective over c.
func (c *Comm) Split(ctx context.Context, color, key int) (*Comm, error) {
	if color < 0 && color != Undefined {
		return nil, fmt.Errorf("comm: Split color %d must be >= 0 or Undefined", color)
	}
	return c.create(ctx, color, key)
}

// SplitByNode returns the communicator of the ranks of c that share this rank's
// node (host or container), ordered by their rank in c. It is collective over c.
func (c *Comm) SplitByNode(ctx context.Context) (*Comm, error) {
	names := make([]string, 0)
	for r := range c.size {
		if n := c.Node(r); !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return c.create(ctx, slices.Index(names, c.Node(c.rank)), c.rank)
}

// Close releases c. Closing a communicator other than the world is local, like
// MPI_Comm_free: it waits for the operations started by Async (such as
// nonblocking collectives) to complete, runs the destructors of the values
// cached on c (see LoadOrStoreAttr), and frees c's share of the engine (its
// match queue, unless receives are still posted or messages are still
// unreceived on it: those are kept). Closing the world communicator is
// collective, like MPI_Finalize: it says goodbye to every peer, waits (up to
// Config.CloseTimeout, a minute by default) until each has closed too or is gone, closes the connections (which
// fails the operations still pending), and then waits for c's Async
// operations and runs its destructors. Close is idempotent.
func (c *Comm) Close() error {
	c.closeOnce.Do(func() {
		if !c.world {
			c.async.wait()
			c.closed.Store(true)
			c.e.diag.forgetColled(c)
			c.freeAttrs()
			c.slots.Close()
			c.e.dropQueue(c.cid)
			return
		}
		c.closed.Store(true)
		c.slots.Close()
		var sum *insight.Summary
		if ins := c.e.diag.ins; ins != nil {
			s := ins.summary() // before close: it asks the links what they are
			sum = &s
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.e.cfg.CloseTimeout)
		defer cancel()
		c.closeErr = c.e.close(ctx)
		c.sendSummary(sum)
		if c.rdv != nil {
			if err := c.rdv.Close(); err != nil && c.closeErr == nil {
				c.closeErr = err
			}
		}
		c.async.wait()
		c.freeAttrs()
	})
	return c.closeErr
}
