// Package wire defines pmrun's on-the-wire formats: the fixed little-endian frame
// header that every message between ranks starts with, and the handshake that opens
// every connection by proving knowledge of the job secret.
//
// A frame is a 32-byte header followed by Header.Length payload bytes:
//
//	off size field
//	0   1    version (Version)
//	1   1    kind (Kind)
//	2   2    flags
//	4   4    context id (communicator)
//	8   4    source rank (world rank of the sender)
//	12  4    tag (user tags are >= 0, negative tags are reserved for collectives)
//	16  8    id (request id used by the rendezvous protocol)
//	24  8    length (payload bytes that follow, or the announced size for KindRTS)
//
// Decode never trusts a length: it checks it against Limits before anyone allocates.
//
//	h := wire.Header{Kind: wire.KindEager, Src: 1, Tag: 7, Length: 2}
//	var b [wire.HeaderSize]byte
//	h.Put(b[:])
//	got, err := wire.DecodeHeader(b[:], wire.DefaultLimits())
package wire
