package wire

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pmrun/pmrun/internal/e2e"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Kind: KindEager, Ctx: 1, Src: 3, Tag: 7, Length: 5},
		{Kind: KindEager, Flags: FlagSync | FlagCompressed, Ctx: 1, Src: 3, Tag: 7, ID: 12, Length: 5},
		{Kind: KindRTS, Ctx: 9, Src: 0, Tag: -20, ID: 1 << 40, Length: 1 << 33},
		{Kind: KindCTS, Src: 2, ID: 4, Length: 9},
		{Kind: KindData, Flags: FlagCompressed, Src: 1, ID: 4, Length: 1 << 20},
		{Kind: KindBye, Src: 6},
		{Kind: KindRTSMem, Ctx: 2, Src: 1, Tag: 3, ID: 7, Length: RTSMemSize},
		{Kind: KindDone, Src: 1, ID: 7},
		{Kind: KindRevoke, Ctx: 2, Src: 1, ID: 7},
	} {
		var b [HeaderSize]byte
		h.Put(b[:])
		got, err := DecodeHeader(b[:], DefaultLimits())
		if err != nil || got != h {
			t.Errorf("round trip of %+v: %+v, %v", h, got, err)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	lim := Limits{MaxPayload: 100, MaxMessage: 1000, MaxRank: 4}
	enc := func(h Header) []byte { b := make([]byte, HeaderSize); h.Put(b); return b }
	bad := map[string][]byte{
		"short":          enc(Header{Kind: KindEager})[:10],
		"version":        append([]byte{9}, enc(Header{Kind: KindEager})[1:]...),
		"kind zero":      enc(Header{}),
		"kind unknown":   enc(Header{Kind: kindEnd}),
		"payload":        enc(Header{Kind: KindEager, Length: 101}),
		"data payload":   enc(Header{Kind: KindData, Length: 1 << 62}),
		"message":        enc(Header{Kind: KindRTS, Length: 1001}),
		"rank":           enc(Header{Kind: KindEager, Src: 4}),
		"negative rank":  enc(Header{Kind: KindEager, Src: -1}),
		"flags":          enc(Header{Kind: KindEager, Flags: 0x8000}),
		"sync no id":     enc(Header{Kind: KindEager, Flags: FlagSync}),
		"sync on data":   enc(Header{Kind: KindData, Flags: FlagSync, ID: 3}),
		"bye w/ payload": enc(Header{Kind: KindBye, Length: 1}),
		"rts-mem short":  enc(Header{Kind: KindRTSMem, Length: RTSMemSize - 1}),
		"done payload":   enc(Header{Kind: KindDone, Length: 1}),
		"revoke payload": enc(Header{Kind: KindRevoke, Length: 8}),
	}
	for name, b := range bad {
		if _, err := DecodeHeader(b, lim); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzDecodeHeader(f *testing.F) {
	for _, h := range []Header{
		{Kind: KindEager, Ctx: 1, Src: 1, Tag: 7, Length: 2},
		{Kind: KindRTS, Src: 2, ID: 9, Length: 1 << 30},
		{Kind: KindCTS, Src: 0, ID: 9, Length: 3},
		{Kind: KindData, Flags: FlagCompressed, Src: 3, ID: 3, Length: 4096},
		{Kind: KindBye, Src: 5},
		{Kind: KindRTSMem, Src: 1, ID: 2, Length: RTSMemSize},
		{Kind: KindDone, Src: 1, ID: 2},
	} {
		b := make([]byte, HeaderSize)
		h.Put(b)
		f.Add(b)
	}
	f.Add([]byte("PMRN garbage"))
	lim := Limits{MaxPayload: 1 << 20, MaxMessage: 1 << 30, MaxRank: 64}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHeader(b, lim)
		if err != nil {
			return
		}
		if h.HasPayload() && h.Length > lim.MaxPayload || h.Kind == KindRTS && h.Length > lim.MaxMessage || h.Src < 0 || h.Src >= lim.MaxRank {
			t.Fatalf("accepted out-of-bounds header %+v", h)
		}
		re := make([]byte, HeaderSize)
		h.Put(re)
		if !bytes.Equal(re, b[:HeaderSize]) {
			t.Fatalf("round trip changed % x into % x", b[:HeaderSize], re)
		}
	})
}

func TestRTSMem(t *testing.T) {
	lim := Limits{MaxMessage: 1 << 30}
	b := make([]byte, RTSMemSize)
	PutRTSMem(b, 1<<20, 0xc000123000)
	size, addr, err := RTSMem(b, lim)
	if err != nil || size != 1<<20 || addr != 0xc000123000 {
		t.Errorf("RTSMem = %d, %#x, %v; want %d, %#x", size, addr, err, 1<<20, 0xc000123000)
	}
	PutRTSMem(b, 1<<31, 1)
	if _, _, err := RTSMem(b, lim); !errors.Is(err, ErrTooLarge) {
		t.Errorf("RTSMem of a message above MaxMessage: %v, want ErrTooLarge", err)
	}
	if _, _, err := RTSMem(b[:8], lim); !errors.Is(err, ErrBadPayload) {
		t.Errorf("RTSMem of 8 bytes: %v, want ErrBadPayload", err)
	}
}

func handshakePair(t *testing.T, dialSecret, accSecret []byte) (dialErr, accErr error, role Role, id uint32) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		dialErr = DialHandshake(a, dialSecret, RolePeer, 42)
		if dialErr != nil {
			a.Close()
		}
	}()
	role, id, accErr = AcceptHandshake(b, accSecret)
	if accErr != nil {
		b.Close()
	}
	<-done
	return
}

func TestHandshake(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	dErr, aErr, role, id := handshakePair(t, secret, secret)
	if dErr != nil || aErr != nil || role != RolePeer || id != 42 {
		t.Fatalf("good handshake: %v %v role %d id %d", dErr, aErr, role, id)
	}
	other := bytes.Repeat([]byte{8}, 32)
	dErr, aErr, _, _ = handshakePair(t, other, secret)
	if !errors.Is(dErr, ErrHandshake) || aErr == nil {
		t.Fatalf("wrong secret: dialer %v, acceptor %v", dErr, aErr)
	}
}

func TestHandshakeGarbageAndSilence(t *testing.T) {
	secret := []byte("0123456789abcdef")
	a, b := net.Pipe()
	go func(a net.Conn) { a.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); a.Close() }(a)
	if _, _, err := AcceptHandshake(b, secret); !errors.Is(err, ErrHandshake) {
		t.Fatalf("garbage: %v", err)
	}
	b.Close()
	e2e.NotShort(t, "the silent dialer, dropped after the handshake timeout")
	a, b = net.Pipe() // a dialer that says nothing is dropped after the timeout
	defer a.Close()
	start := time.Now()
	if _, _, err := AcceptHandshake(b, secret); err == nil || time.Since(start) > HandshakeTimeout+2*time.Second {
		t.Fatalf("silent dialer: %v after %v", err, time.Since(start))
	}
}

// TestHandshakeSilentAcceptor: an acceptor that reads the hello and never
// answers (a slow or cut link) is not taken for a refusal: the dialer's
// error says that no answer came, and is not ErrHandshake.
func TestHandshakeSilentAcceptor(t *testing.T) {
	e2e.NotShort(t, "the silent acceptor, given up after the handshake timeout")
	a, b := net.Pipe()
	defer a.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.ReadFull(b, make([]byte, helloSize))
		io.Copy(io.Discard, b) // until a closes
	}()
	err := DialHandshake(a, []byte("0123456789abcdef"), RolePeer, 1)
	a.Close()
	b.Close()
	<-done
	if err == nil || errors.Is(err, ErrHandshake) || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("silent acceptor: %v", err)
	}
}
