package node

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Output forwarding. Without tags, the bytes a rank writes reach the
// launcher's output unchanged and in order: nothing is inserted, dropped or
// reordered, so binary output survives. Lines are kept whole (never mixed with
// another rank's bytes) when they fit in maxLine; a partial line (a prompt, a
// progress bar redrawn with \r) is written as it is once it has waited
// flushDelay for the rest of its line. With tags, every line starts with its
// rank's tag: a line that another rank's output interrupts (because it was
// longer than maxLine or paused mid-line) is ended there with a newline and
// continues on a new tagged line.

const (
	// maxLine is the longest line kept whole; a longer one is written in
	// pieces of maxLine bytes, so that a rank printing without newlines
	// cannot make the launcher buffer without bound.
	maxLine = 1 << 20
	// firstBuffer is a stream's buffer until a longer line needs more.
	firstBuffer = 64 << 10
)

// flushDelay is how long a partial line waits for the rest of its line
// before it is written as it is (100 ms; nanoseconds). A variable so that a
// test of whole lines need not depend on how fast a loaded machine runs the
// rank that writes them.
var flushDelay = func() *atomic.Int64 {
	var d atomic.Int64
	d.Store(int64(100 * time.Millisecond))
	return &d
}()

// lineSink serialises the output of many ranks onto one writer.
type lineSink struct {
	mu   sync.Mutex // guards w, open and err
	w    io.Writer
	open *outStream // the stream whose last write did not end its line, if any
	err  error      // the first write error; nothing is written after it
}

// outStream is one rank's stdout or stderr on its way to a sink.
type outStream struct {
	sink   *lineSink
	prefix []byte // the tag of every line ("" without --tag-output)
}

// writeLine writes one line of the launcher's own (prefix and a line ending in
// a newline), starting a new line if a rank's partial line is open.
func (s *lineSink) writeLine(prefix, line []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	buf := make([]byte, 0, 1+len(prefix)+len(line))
	if s.open != nil {
		buf = append(buf, '\n')
	}
	buf = append(append(buf, prefix...), line...)
	s.put(nil, buf)
}

// put writes p for from; s.mu is held.
func (s *lineSink) put(from *outStream, p []byte) {
	if s.err != nil || len(p) == 0 {
		return
	}
	if _, err := s.w.Write(p); err != nil {
		s.err = err // the output is gone (a closed pipe): drop the rest
		return
	}
	s.open = nil
	if p[len(p)-1] != '\n' {
		s.open = from
	}
}

// write writes p, which ends a line unless it is the last piece of the
// stream's buffer, tagging each line when the stream has a prefix.
func (o *outStream) write(p []byte) {
	if len(p) == 0 {
		return
	}
	s := o.sink
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(o.prefix) == 0 {
		s.put(o, p)
		return
	}
	buf := make([]byte, 0, len(p)+len(o.prefix)*(1+bytes.Count(p, []byte{'\n'}))+1)
	switch s.open {
	case o: // continue this stream's line
	case nil:
		buf = append(buf, o.prefix...)
	default: // end another rank's line first
		buf = append(append(buf, '\n'), o.prefix...)
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			buf = append(buf, p...)
			break
		}
		buf = append(buf, p[:i+1]...)
		p = p[i+1:]
		if len(p) > 0 {
			buf = append(buf, o.prefix...)
		}
	}
	s.put(o, buf)
}

// deadliner is a reader whose blocked Read can be given a deadline (a pipe, a
// yamux stream).
type deadliner interface {
	SetReadDeadline(t time.Time) error
}

// forwardLines copies r to sink until r ends, as described above, with
// prefix as the tag of every line (nil: none). Partial lines wait at most
// flushDelay when r has read deadlines; otherwise they are written at once.
func forwardLines(r io.Reader, sink *lineSink, prefix []byte) {
	o := &outStream{sink: sink, prefix: prefix}
	dl, _ := r.(deadliner)
	buf := make([]byte, 0, firstBuffer)
	waiting := false // a partial line is in buf and r has a deadline for it
	flush := func() {
		o.write(buf)
		buf = buf[:0]
		if waiting {
			dl.SetReadDeadline(time.Time{})
			waiting = false
		}
	}
	for {
		if len(buf) == cap(buf) { // no newline in a full buffer
			if cap(buf) < maxLine {
				buf = append(make([]byte, 0, min(2*cap(buf), maxLine)), buf...)
			} else {
				flush()
			}
		}
		start := len(buf)
		n, err := r.Read(buf[start:cap(buf)])
		buf = buf[:start+n]
		newLine := false // buf now starts a line
		if i := bytes.LastIndexByte(buf[start:], '\n'); i >= 0 {
			end := start + i + 1
			o.write(buf[:end])
			buf, newLine = buf[:copy(buf, buf[end:])], true
		}
		switch {
		case err != nil && isTimeout(err):
			flush()
		case err != nil:
			o.write(buf) // the end: as it is, without a newline added
			return
		case len(buf) == 0 && waiting:
			dl.SetReadDeadline(time.Time{})
			waiting = false
		case len(buf) > 0 && (newLine || !waiting):
			// A new partial line: it waits at most flushDelay from now.
			waiting = dl != nil && dl.SetReadDeadline(time.Now().Add(time.Duration(flushDelay.Load()))) == nil
			if !waiting {
				flush() // no way to wait with a limit: write it now
			}
		}
	}
}

// isTimeout reports whether err is a read deadline expiring.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
