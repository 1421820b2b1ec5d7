package comm

import (
	"testing"

	"github.com/pmrun/pmrun/internal/wire"
)

// FuzzLinkParse feeds arbitrary bytes, as if read from a peer's connection, to the
// frame parser of a link: it must reject what is malformed without panicking,
// allocating unbounded memory or delivering anything it should not. Inputs are
// split in two to exercise frames that arrive in pieces.
func FuzzLinkParse(f *testing.F) {
	frame := func(h wire.Header, payload []byte) []byte {
		h.Length = uint64(len(payload))
		b := make([]byte, wire.HeaderSize, wire.HeaderSize+len(payload))
		h.Put(b)
		return append(b, payload...)
	}
	f.Add(frame(wire.Header{Kind: wire.KindEager, Ctx: worldCtx, Src: 1, Tag: 3}, []byte("hello")), 10)
	f.Add(append(frame(wire.Header{Kind: wire.KindEager, Ctx: worldCtx, Src: 1}, nil),
		frame(wire.Header{Kind: wire.KindBye, Src: 1}, nil)...), 40)
	rts := wire.Header{Kind: wire.KindRTS, Ctx: worldCtx, Src: 1, Tag: 2, ID: 5, Length: 1 << 20}
	b := make([]byte, wire.HeaderSize)
	rts.Put(b)
	f.Add(b, 16)
	f.Add(frame(wire.Header{Kind: wire.KindData, Src: 1, ID: 9}, []byte("xyz")), 33)
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"), 4)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		cfg := DefaultConfig()
		cfg.EagerLimit, cfg.ShmEagerLimit, cfg.ChunkSize = 1<<10, 1<<10, 4<<10
		e := newEngine(cfg, 0, 2, []string{"a", "b"})
		e.links[0] = &loopLink{from: e, to: e}
		e.links[1] = &loopLink{from: e, to: e} // CTS answers go nowhere harmful
		l := &tcpLink{e: e, peer: 1, rbuf: make([]byte, readBufSize)}
		if cut < 0 || cut > len(data) {
			cut = len(data) / 2
		}
		for _, part := range [][]byte{data[:cut], data[cut:]} {
			if len(part) > len(l.rbuf)-l.rend {
				return
			}
			l.rend += copy(l.rbuf[l.rend:], part)
			if err := l.parse(); err != nil {
				return // rejected: the connection would be closed
			}
			if l.rpos == l.rend {
				l.rpos, l.rend = 0, 0
			}
		}
		e.pushers.Wait()
	})
}
