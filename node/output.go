package node

import (
	"bufio"
	"bytes"
	"io"
	"sync"
)

// maxLine is the longest line forwarded whole; a longer one is split, so that a
// rank printing without newlines cannot make the launcher buffer without bound.
const maxLine = 64 << 10

// lineSink serialises whole lines from many ranks onto one writer, so that the
// bytes of two ranks never share a line.
type lineSink struct {
	mu sync.Mutex // guards w
	w  io.Writer
}

func (s *lineSink) writeLine(prefix, line []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(prefix) == 0 {
		s.w.Write(line)
		return
	}
	buf := make([]byte, 0, len(prefix)+len(line))
	buf = append(append(buf, prefix...), line...)
	s.w.Write(buf)
}

// forwardLines copies r to sink line by line with prefix until r ends. A final
// line without a newline gets one.
func forwardLines(r io.Reader, sink *lineSink, prefix []byte) {
	br := bufio.NewReaderSize(r, maxLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			if line[len(line)-1] != '\n' && err != bufio.ErrBufferFull {
				line = append(bytes.Clone(line), '\n')
			} else if err == bufio.ErrBufferFull {
				line = append(bytes.Clone(line), '\n') // split an overlong line
			}
			sink.writeLine(prefix, line)
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}
