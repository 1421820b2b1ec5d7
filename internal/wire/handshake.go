package wire

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The handshake opens every pmrun connection. Both sides prove they know the job
// secret without revealing it, and the dialer says who it is:
//
//	dialer  -> "PMRN" version(1) role(1) id(4, LE) nonceD(16)
//	acceptor-> nonceA(16) HMAC(secret, "pmrun-acc" | hello | nonceA)
//	dialer  -> HMAC(secret, "pmrun-dial" | hello | nonceA)
//	acceptor-> 1 byte 0x01 (accepted)
//
// hello is the dialer's first 26 bytes. A peer that sends anything else, or is too
// slow, is refused.

const (
	magic     = "PMRN"
	helloSize = 4 + 1 + 1 + 4 + 16
	macSize   = sha256.Size
	nonceSize = 16
)

// Role says what kind of connection a dialer opens; the acceptor may refuse roles
// it does not serve.
type Role uint8

// Roles. ONLY APPEND.
const (
	RolePeer       Role = iota + 1 // rank to rank data connection
	RoleRendezvous                 // rank to launcher control connection
	RoleControl                    // launcher or agent to agent control connection
)

// HandshakeTimeout bounds a whole handshake.
const HandshakeTimeout = 5 * time.Second

func mac(secret []byte, label string, hello, nonce []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	m.Write(hello)
	m.Write(nonce)
	return m.Sum(nil)
}

// DialHandshake runs the dialer's side of the handshake on conn.
func DialHandshake(conn net.Conn, secret []byte, role Role, id uint32) error {
	if err := conn.SetDeadline(time.Now().Add(HandshakeTimeout)); err != nil {
		return err
	}
	defer conn.SetDeadline(time.Time{})
	hello := make([]byte, helloSize)
	copy(hello, magic)
	hello[4] = Version
	hello[5] = byte(role)
	binary.LittleEndian.PutUint32(hello[6:], id)
	if _, err := rand.Read(hello[10:]); err != nil {
		return err
	}
	if _, err := conn.Write(hello); err != nil {
		return fmt.Errorf("wire: handshake: %w", err)
	}
	resp := make([]byte, nonceSize+macSize)
	if _, err := io.ReadFull(conn, resp); err != nil {
		return answerErr("the acceptor's proof", err)
	}
	nonceA := resp[:nonceSize]
	if !hmac.Equal(resp[nonceSize:], mac(secret, "pmrun-acc", hello, nonceA)) {
		return fmt.Errorf("%w: acceptor does not know the job secret", ErrHandshake)
	}
	if _, err := conn.Write(mac(secret, "pmrun-dial", hello, nonceA)); err != nil {
		return fmt.Errorf("wire: handshake: %w", err)
	}
	var ok [1]byte
	if _, err := io.ReadFull(conn, ok[:]); err != nil {
		return answerErr("the acceptor's verdict", err)
	}
	if ok[0] != 1 {
		return fmt.Errorf("%w: acceptor refused the connection", ErrHandshake)
	}
	return nil
}

// answerErr is the error of a dialer that did not get the acceptor's
// answer: a refusal (ErrHandshake) when the acceptor closed the connection,
// as it does on a wrong secret, but not when no answer came in time (a slow
// or cut link, a stopped acceptor), which says so instead.
func answerErr(what string, err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("wire: handshake: no answer (%s) within %v: %w", what, HandshakeTimeout, err)
	}
	return fmt.Errorf("%w: reading %s: %v", ErrHandshake, what, err)
}

// AcceptHandshake runs the acceptor's side of the handshake on conn. It returns the
// dialer's role and id once the dialer has proven knowledge of secret. A failed
// handshake returns an error wrapping ErrHandshake; the caller closes conn.
func AcceptHandshake(conn net.Conn, secret []byte) (Role, uint32, error) {
	if err := conn.SetDeadline(time.Now().Add(HandshakeTimeout)); err != nil {
		return 0, 0, err
	}
	defer conn.SetDeadline(time.Time{})
	hello := make([]byte, helloSize)
	if _, err := io.ReadFull(conn, hello); err != nil {
		return 0, 0, fmt.Errorf("%w: short hello: %v", ErrHandshake, err)
	}
	if string(hello[:4]) != magic || hello[4] != Version {
		return 0, 0, fmt.Errorf("%w: not a pmrun hello (% x)", ErrHandshake, hello[:5])
	}
	role := Role(hello[5])
	id := binary.LittleEndian.Uint32(hello[6:])
	resp := make([]byte, nonceSize, nonceSize+macSize)
	if _, err := rand.Read(resp); err != nil {
		return 0, 0, err
	}
	nonceA := resp[:nonceSize]
	resp = append(resp, mac(secret, "pmrun-acc", hello, nonceA)...)
	if _, err := conn.Write(resp); err != nil {
		return 0, 0, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	proof := make([]byte, macSize)
	if _, err := io.ReadFull(conn, proof); err != nil {
		return 0, 0, fmt.Errorf("%w: short proof: %v", ErrHandshake, err)
	}
	if !hmac.Equal(proof, mac(secret, "pmrun-dial", hello, nonceA)) {
		return 0, 0, fmt.Errorf("%w: dialer does not know the job secret", ErrHandshake)
	}
	if _, err := conn.Write([]byte{1}); err != nil {
		return 0, 0, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	return role, id, nil
}
