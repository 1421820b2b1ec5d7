package node

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// The worker stream of task mode: a task worker (python -m pmrun._worker)
// and its client exchange frames over one byte stream, relayed byte for byte
// by the agent (or, for local workers, by the hub). The relay reads only each
// frame's envelope,
//
//	u8 kind, u8[3] zero, u32 nparts (little-endian, 1..65536),
//	u64 len[nparts] (little-endian, each at most 1<<40), then the parts,
//
// to count the worker busy while it has more calls ('C') than replies ('R'),
// and to close a stream whose envelope is malformed instead of passing on
// bytes that the other side would misread.

// Frame kinds of the worker stream.
const (
	frameHello = 'H' // worker -> client, its first frame
	frameFunc  = 'F' // client -> worker: a function definition
	frameCall  = 'C' // client -> worker: a batch of calls
	frameReply = 'R' // worker -> client: a batch of replies
	frameExit  = 'X' // client -> worker: exit
)

// Bounds of a frame's envelope.
const (
	maxFrameParts = 65536
	maxFramePart  = 1 << 40
)

// ErrMalformedFrame is returned by the relay for a frame whose envelope
// breaks the format.
var ErrMalformedFrame = errors.New("malformed frame")

// relayBuffer is the relay's read buffer: a frame that fits in it whole
// (envelope and parts) is forwarded by one write.
const relayBuffer = 64 << 10

// relayChunk is the most the relay moves in one read and write of a larger
// frame's parts.
const relayChunk = 256 << 10

// frameError names what was wrong with a frame from one side.
func frameError(from string, format string, args ...any) error {
	return fmt.Errorf("%w from the %s: %s", ErrMalformedFrame, from, fmt.Sprintf(format, args...))
}

// relayFrames copies frames from src to dst until src ends, checking each
// envelope. toWorker tells the direction: the client sends F, C and X
// frames, the worker H and R. onFrame (if not nil) is called with each
// frame's kind once its envelope has been read, before the frame is
// forwarded. It returns nil when src ends at a frame boundary, the first
// error otherwise (a malformed envelope: ErrMalformedFrame).
func relayFrames(dst io.Writer, src io.Reader, toWorker bool, onFrame func(kind byte)) error {
	from, allowed := "worker", "HR"
	if toWorker {
		from, allowed = "client", "FCX"
	}
	br := bufio.NewReaderSize(src, relayBuffer)
	out := make([]byte, 0, relayBuffer)
	var big []byte // the parts of larger frames pass through it
	for {
		hdr, err := br.Peek(8)
		if err != nil {
			if err == io.EOF && len(hdr) == 0 {
				return nil
			}
			return fmt.Errorf("reading from the %s: %w", from, noEOF(err))
		}
		kind := hdr[0]
		if !containsByte(allowed, kind) {
			return frameError(from, "kind %q (want one of %s)", kind, allowed)
		}
		if hdr[1]|hdr[2]|hdr[3] != 0 {
			return frameError(from, "reserved bytes % x of a %q frame are not zero", hdr[1:4], kind)
		}
		n := binary.LittleEndian.Uint32(hdr[4:8])
		if n < 1 || n > maxFrameParts {
			return frameError(from, "%q frame with %d parts (want 1 to %d)", kind, n, maxFrameParts)
		}
		out = append(out[:0], hdr...)
		br.Discard(8)
		var total uint64
		for i := range int(n) {
			var l [8]byte
			if _, err := io.ReadFull(br, l[:]); err != nil {
				return fmt.Errorf("reading a %q frame's lengths from the %s: %w", kind, from, noEOF(err))
			}
			size := binary.LittleEndian.Uint64(l[:])
			if size > maxFramePart {
				return frameError(from, "%q frame's part %d of %d bytes (at most %d)", kind, i, size, uint64(maxFramePart))
			}
			total += size
			out = append(out, l[:]...)
		}
		if onFrame != nil {
			onFrame(kind)
		}
		if uint64(len(out))+total <= relayBuffer {
			// Small: envelope and parts go in one write.
			body := out[len(out) : len(out)+int(total)]
			if _, err := io.ReadFull(br, body); err != nil {
				return fmt.Errorf("reading a %q frame from the %s: %w", kind, from, noEOF(err))
			}
			if _, err := dst.Write(out[:len(out)+int(total)]); err != nil {
				return err
			}
			continue
		}
		if _, err := dst.Write(out); err != nil {
			return err
		}
		if big == nil {
			big = make([]byte, relayChunk)
		}
		for total > 0 {
			// A read of the chunk's size past what br holds goes to src
			// straight into big.
			n, err := br.Read(big[:min(total, relayChunk)])
			if n > 0 {
				if _, err := dst.Write(big[:n]); err != nil {
					return err
				}
				total -= uint64(n)
			}
			if err != nil && total > 0 {
				return fmt.Errorf("relaying a %q frame from the %s: %w", kind, from, noEOF(err))
			}
		}
	}
}

func containsByte(s string, b byte) bool {
	for i := range len(s) {
		if s[i] == b {
			return true
		}
	}
	return false
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// callCount counts a worker's calls and replies; the worker is busy while
// it has more calls than replies. Safe for concurrent use.
type callCount struct {
	mu      sync.Mutex // guards calls and replies
	calls   uint64
	replies uint64
	frames  uint64 // frames from the worker
}

func (c *callCount) count(kind byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch kind {
	case frameCall:
		c.calls++
	case frameReply:
		c.replies++
	}
	if kind == frameHello || kind == frameReply {
		c.frames++
	}
}

// busy tells whether the worker has calls without replies.
func (c *callCount) busy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls > c.replies
}

// spoke tells whether the worker has sent a frame.
func (c *callCount) spoke() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames > 0
}

// lossWait bounds how long a relay whose worker closed its stream waits for
// the worker's end to be reported before it closes the client's side.
const lossWait = time.Second

// relayWorker relays between a worker's stream and its client's until one
// side ends or sends a malformed frame, counting into c; then it closes both.
// When the worker's side ends first, the client's is closed once reported
// is closed (the worker's end was reported: a client learns why before it
// sees the close), or after lossWait. It returns the first error (nil when
// either side ended cleanly).
func relayWorker(client, worker net.Conn, c *callCount, reported <-chan struct{}) error {
	type end struct {
		fromWorker bool
		err        error
	}
	ends := make(chan end, 2)
	go func() { ends <- end{false, relayFrames(worker, client, true, c.count)} }()
	go func() { ends <- end{true, relayFrames(client, worker, false, c.count)} }()
	first := <-ends // either side ending ends the worker's stream
	if first.fromWorker && !errors.Is(first.err, ErrMalformedFrame) {
		select {
		case <-reported:
		case <-time.After(lossWait):
		}
	}
	client.Close()
	worker.Close()
	err := first.err
	if second := <-ends; err == nil && errors.Is(second.err, ErrMalformedFrame) {
		err = second.err
	}
	if err != nil && !errors.Is(err, ErrMalformedFrame) {
		err = nil // a side that went away mid-frame: the worker's end says it
	}
	return err
}
