package comm

import (
	"errors"
	"strings"
	"testing"

	"github.com/pmrun/pmrun/internal/wire"
)

// FuzzLinkParse feeds arbitrary bytes, as if read from a peer's connection, to the
// frame parser of a link, split in two to exercise frames that arrive in
// pieces. It must not panic, and it checks what can be known from outside:
// a first header that does not decode, or that claims another source than the
// link's peer, is rejected; what the parser queued is from the peer, no
// longer than the limits allow, and holds no more memory than the input
// brought (its payloads plus the bookkeeping of each frame).
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
	f.Add(frame(wire.Header{Kind: wire.KindEager, Ctx: worldCtx, Src: 0, Tag: 3}, []byte("not me")), 50)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		e, l := parseLink(DefaultConfig())
		if cut < 0 || cut > len(data) {
			cut = len(data) / 2
		}
		if len(data) > len(l.rbuf) {
			return
		}
		var rejected error
		for _, part := range [][]byte{data[:cut], data[cut:]} {
			l.rend += copy(l.rbuf[l.rend:], part)
			if rejected = l.parse(); rejected != nil {
				break // the connection would be closed
			}
			if l.rpos == l.rend {
				l.rpos, l.rend = 0, 0
			}
		}
		e.pushers.Wait()
		if len(data) >= wire.HeaderSize {
			h, err := wire.DecodeHeader(data[:wire.HeaderSize], e.lim)
			if (err != nil || h.Src != 1) && rejected == nil {
				t.Fatalf("first header accepted: %+v, %v", h, err)
			}
		}
		if held, most := e.held[1].Load(), heldCost(len(data))*int64(1+len(data)/wire.HeaderSize); held > most {
			t.Fatalf("%d bytes held for %d bytes of input", held, len(data))
		}
		c := newComm(e, worldCtx, []int{0, 1})
		ok, st, err := c.Iprobe(AnySource, AnyTag)
		if err != nil {
			t.Fatalf("probe after parsing: %v", err)
		}
		if ok && (st.Source != 1 || st.Tag < 0 || uint64(st.Count) > e.lim.MaxMessage) {
			t.Fatalf("queued a message the peer could not have sent: %+v", st)
		}
	})
}

// parseLink returns rank 0 of a job of 2 with small limits, whose link from
// rank 1 parses what a test puts in its read buffer.
func parseLink(cfg *Config) (*engine, *tcpLink) {
	cfg.EagerLimit, cfg.ShmEagerLimit, cfg.ShmEagerPoint, cfg.ChunkSize = 1<<10, 1<<10, 0, 4<<10
	e := newEngine(cfg, 0, 2, []string{"a", "b"})
	e.links[0] = &loopLink{from: e, to: e}
	e.links[1] = &loopLink{from: e, to: e} // CTS answers go nowhere harmful
	return e, &tcpLink{peerConn: peerConn{e: e, peer: 1, rbuf: make([]byte, readBufSize)}}
}

// TestFrameLimits: a peer's frame that announces a message over MaxMessage,
// or carries a payload over the frame limit, is refused with an error that
// names the limit's knobs.
func TestFrameLimits(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxMessage = 1 << 20
	for name, h := range map[string]wire.Header{
		"message": {Kind: wire.KindRTS, Ctx: worldCtx, Src: 1, ID: 1, Length: 1<<20 + 1},
		"frame":   {Kind: wire.KindEager, Ctx: worldCtx, Src: 1, Length: 4<<10 + 1<<10 + 1}, // past ChunkSize and 1 KiB
	} {
		t.Run(name, func(t *testing.T) {
			_, l := parseLink(cfg)
			h.Put(l.rbuf)
			l.rend = wire.HeaderSize
			err := l.parse()
			if !errors.Is(err, wire.ErrTooLarge) || !strings.Contains(err.Error(), "PMRUN_MAX_MESSAGE") || !strings.Contains(err.Error(), "PMRUN_CHUNK_SIZE") {
				t.Fatalf("parse = %v, want wire.ErrTooLarge naming the knobs", err)
			}
		})
	}
}
