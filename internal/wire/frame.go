package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Version is the frame format version carried in every header.
const Version = 1

// HeaderSize is the size in bytes of an encoded Header.
const HeaderSize = 32

// Kind says what a frame carries. ONLY APPEND: the values are on the wire.
type Kind uint8

const (
	// KindEager carries a whole message in its payload.
	KindEager Kind = iota + 1
	// KindRTS announces a large message (ready to send); Length is its size, no payload.
	KindRTS
	// KindCTS answers an RTS (clear to send): ID is the sender's request id, Length the
	// receiver's request id.
	KindCTS
	// KindData carries one chunk of a large message; ID is the receiver's request id.
	KindData
	// KindBye announces an orderly close of the connection.
	KindBye
	// KindRTSMem announces a large message, like KindRTS, to a peer on the same
	// node that may copy it straight out of the sender's memory: ID is the
	// sender's request id, and the RTSMemSize-byte payload holds the message's
	// size and the address of its bytes in the sender's process (PutRTSMem).
	KindRTSMem
	// KindDone tells the sender of a KindRTSMem that the receiver is done with
	// its bytes (it copied them, or drops them), and the sender of a KindEager
	// with FlagSync that a receive matched it: ID is the sender's request id.
	// No payload.
	KindDone
	// KindRevoke withdraws the KindRTSMem of a cancelled send: ID is the sender's
	// request id. The receiver answers with a KindCTS of Length 0 if no receive
	// has matched the message yet; otherwise its KindDone (or KindCTS) is on its
	// way. No payload.
	KindRevoke
	kindEnd
)

func (k Kind) String() string {
	switch k {
	case KindEager:
		return "eager"
	case KindRTS:
		return "rts"
	case KindCTS:
		return "cts"
	case KindData:
		return "data"
	case KindBye:
		return "bye"
	case KindRTSMem:
		return "rts-mem"
	case KindDone:
		return "done"
	case KindRevoke:
		return "revoke"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Flag bits of Header.Flags.
const (
	// FlagCompressed marks a payload compressed with s2.
	FlagCompressed uint16 = 1 << iota
	// FlagSync marks the KindEager of a synchronous send: ID is the sender's
	// request id, which the receiver answers with KindDone once a receive
	// matches the message.
	FlagSync
	// FlagBuffer marks a KindRTSMem of a standard send of an eager size: the
	// receiver may copy the bytes and answer KindDone before a receive
	// matches them, keeping them as it keeps an eager message that came
	// first.
	FlagBuffer
)

// Header is a decoded frame header.
type Header struct {
	Kind   Kind
	Flags  uint16
	Ctx    uint32
	Src    int32
	Tag    int32
	ID     uint64
	Length uint64
}

// Limits bound what DecodeHeader accepts.
type Limits struct {
	// MaxPayload bounds the payload of one eager or data frame.
	MaxPayload uint64
	// MaxMessage bounds the size announced by an RTS frame.
	MaxMessage uint64
	// MaxRank bounds the source rank (exclusive); 0 means no bound.
	MaxRank int32
}

// DefaultLimits returns limits suited to a job: 64 MiB frames, 1 TiB messages.
func DefaultLimits() Limits {
	return Limits{MaxPayload: 64 << 20, MaxMessage: 1 << 40}
}

// Errors returned by DecodeHeader.
var (
	ErrShort      = errors.New("wire: short header")
	ErrVersion    = errors.New("wire: unsupported version")
	ErrKind       = errors.New("wire: unknown frame kind")
	ErrTooLarge   = errors.New("wire: length exceeds limit")
	ErrBadHeader  = errors.New("wire: malformed header")
	ErrHandshake  = errors.New("wire: handshake refused")
	ErrBadPayload = errors.New("wire: malformed payload")
)

// Put encodes h into b, which must hold HeaderSize bytes.
func (h *Header) Put(b []byte) {
	_ = b[HeaderSize-1]
	b[0] = Version
	b[1] = byte(h.Kind)
	binary.LittleEndian.PutUint16(b[2:], h.Flags)
	binary.LittleEndian.PutUint32(b[4:], h.Ctx)
	binary.LittleEndian.PutUint32(b[8:], uint32(h.Src))
	binary.LittleEndian.PutUint32(b[12:], uint32(h.Tag))
	binary.LittleEndian.PutUint64(b[16:], h.ID)
	binary.LittleEndian.PutUint64(b[24:], h.Length)
}

// DecodeHeader decodes and validates a header from the first HeaderSize bytes of b.
func DecodeHeader(b []byte, lim Limits) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, ErrShort
	}
	if b[0] != Version {
		return Header{}, fmt.Errorf("%w: %d", ErrVersion, b[0])
	}
	h := Header{
		Kind:   Kind(b[1]),
		Flags:  binary.LittleEndian.Uint16(b[2:]),
		Ctx:    binary.LittleEndian.Uint32(b[4:]),
		Src:    int32(binary.LittleEndian.Uint32(b[8:])),
		Tag:    int32(binary.LittleEndian.Uint32(b[12:])),
		ID:     binary.LittleEndian.Uint64(b[16:]),
		Length: binary.LittleEndian.Uint64(b[24:]),
	}
	if h.Kind == 0 || h.Kind >= kindEnd {
		return Header{}, fmt.Errorf("%w: %d", ErrKind, b[1])
	}
	if h.Src < 0 || (lim.MaxRank > 0 && h.Src >= lim.MaxRank) {
		return Header{}, fmt.Errorf("%w: source rank %d", ErrBadHeader, h.Src)
	}
	if h.Flags&^(FlagCompressed|FlagSync|FlagBuffer) != 0 {
		return Header{}, fmt.Errorf("%w: unknown flags %#x", ErrBadHeader, h.Flags)
	}
	if h.Flags&FlagSync != 0 && (h.Kind != KindEager || h.ID == 0) {
		return Header{}, fmt.Errorf("%w: sync flag on %s with id %d", ErrBadHeader, h.Kind, h.ID)
	}
	if h.Flags&FlagBuffer != 0 && h.Kind != KindRTSMem {
		return Header{}, fmt.Errorf("%w: buffer flag on %s", ErrBadHeader, h.Kind)
	}
	switch h.Kind {
	case KindEager, KindData:
		if h.Length > lim.MaxPayload {
			return Header{}, fmt.Errorf("%w: %s payload %d > %d", ErrTooLarge, h.Kind, h.Length, lim.MaxPayload)
		}
	case KindRTS:
		if h.Length > lim.MaxMessage {
			return Header{}, fmt.Errorf("%w: message %d > %d", ErrTooLarge, h.Length, lim.MaxMessage)
		}
	case KindCTS:
		// CTS carries a request id in Length and no payload.
	case KindRTSMem:
		if h.Length != RTSMemSize {
			return Header{}, fmt.Errorf("%w: rts-mem payload %d, not %d", ErrBadHeader, h.Length, RTSMemSize)
		}
	default: // KindBye, KindDone, KindRevoke
		if h.Length != 0 {
			return Header{}, fmt.Errorf("%w: %s with payload", ErrBadHeader, h.Kind)
		}
	}
	return h, nil
}

// HasPayload reports whether Length payload bytes follow the header on the wire.
func (h *Header) HasPayload() bool {
	return h.Kind == KindEager || h.Kind == KindData || h.Kind == KindRTSMem
}

// RTSMemSize is the payload size of a KindRTSMem frame.
const RTSMemSize = 16

// PutRTSMem encodes the payload of a KindRTSMem frame into b (RTSMemSize
// bytes): the message's size and the address of its bytes.
func PutRTSMem(b []byte, size, addr uint64) {
	_ = b[RTSMemSize-1]
	binary.LittleEndian.PutUint64(b, size)
	binary.LittleEndian.PutUint64(b[8:], addr)
}

// RTSMem decodes the payload of a KindRTSMem frame; it checks the size against
// lim.MaxMessage.
func RTSMem(b []byte, lim Limits) (size, addr uint64, err error) {
	if len(b) != RTSMemSize {
		return 0, 0, fmt.Errorf("%w: rts-mem payload of %d bytes", ErrBadPayload, len(b))
	}
	size, addr = binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
	if size > lim.MaxMessage {
		return 0, 0, fmt.Errorf("%w: message %d > %d", ErrTooLarge, size, lim.MaxMessage)
	}
	return size, addr, nil
}
