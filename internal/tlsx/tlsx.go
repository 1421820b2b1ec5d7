// Package tlsx is pmrun's optional mutual TLS: a certificate, its key and
// the certificate authority (CA) that must have signed the peer's
// certificate. When configured, every TCP connection pmrun opens (rank to
// rank, rank to launcher, launcher and agents to agents) runs TLS 1.3
// before the job-secret handshake (package wire), which still runs inside
// it: TLS says the peer belongs to the cluster, the secret says it belongs
// to the job.
//
// Both sides present a certificate and check the other's chain against the
// CA. Host names are not checked: nodes reach each other at addresses
// learned from gossip and rendezvous, not names, so membership is "holds a
// certificate the cluster's CA signed", and the CA should sign nothing else.
//
// A nil *Config is TLS off: its Client and Server return the connection
// unchanged.
package tlsx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// The environment a launcher or an agent gives its ranks: file paths, or
// the PEM text itself (the _PEM forms, which win), for containers that do
// not hold the files.
const (
	EnvCert = "PMRUN_TLS_CERT"
	EnvKey  = "PMRUN_TLS_KEY"
	EnvCA   = "PMRUN_TLS_CA"
	pemTail = "_PEM"
)

// HandshakeTimeout bounds a TLS handshake.
const HandshakeTimeout = 5 * time.Second

// Config is a loaded certificate, key and CA.
type Config struct {
	certPEM, keyPEM, caPEM []byte
	server, client         *tls.Config
}

// Files names the three files of a Config, as the --tls-cert, --tls-key
// and --tls-ca flags give them.
type Files struct{ Cert, Key, CA string }

// Load reads f's files. All three empty is TLS off (nil, nil); some but not
// all given is an error naming the missing ones.
func (f Files) Load() (*Config, error) {
	if f == (Files{}) {
		return nil, nil
	}
	var missing []string
	for _, m := range []struct{ flag, v string }{{"--tls-cert", f.Cert}, {"--tls-key", f.Key}, {"--tls-ca", f.CA}} {
		if m.v == "" {
			missing = append(missing, m.flag)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("tls: %v missing: mutual TLS needs --tls-cert, --tls-key and --tls-ca together", missing)
	}
	var pems [3][]byte
	for i, name := range []string{f.Cert, f.Key, f.CA} {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		pems[i] = b
	}
	return FromPEM(pems[0], pems[1], pems[2])
}

// FromPEM builds a Config from PEM text: a certificate (chain), its private
// key, and one or more CA certificates.
func FromPEM(cert, key, ca []byte) (*Config, error) {
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("tls: certificate and key: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("tls: the CA file holds no PEM certificate")
	}
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error { return verifyChain(raw, pool) }
	c := &Config{certPEM: cert, keyPEM: key, caPEM: ca}
	c.server = &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{pair},
		ClientAuth:            tls.RequireAnyClientCert,
		VerifyPeerCertificate: verify,
	}
	c.client = &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{pair},
		InsecureSkipVerify:    true, // the chain is checked by verify; names are not (see the package comment)
		VerifyPeerCertificate: verify,
	}
	return c, nil
}

// verifyChain checks that the peer's certificate chains to one of pool's.
func verifyChain(raw [][]byte, pool *x509.CertPool) error {
	if len(raw) == 0 {
		return errors.New("tls: the peer sent no certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("tls: the peer's certificate: %w", err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("tls: the peer's certificate is not signed by this cluster's CA: %w", err)
	}
	return nil
}

// FromEnv builds the Config that lookup's environment describes (EnvCert,
// EnvKey, EnvCA, each as a path or in its _PEM form); none set is nil.
func FromEnv(lookup func(string) string) (*Config, error) {
	var pems [3][]byte
	for i, name := range []string{EnvCert, EnvKey, EnvCA} {
		if p := lookup(name + pemTail); p != "" {
			pems[i] = []byte(p)
		} else if path := lookup(name); path != "" {
			b, err := os.ReadFile(path)
			if err != nil {
				return nil, fmt.Errorf("tls: %s: %w", name, err)
			}
			pems[i] = b
		}
	}
	switch {
	case pems[0] == nil && pems[1] == nil && pems[2] == nil:
		return nil, nil
	case pems[0] == nil || pems[1] == nil || pems[2] == nil:
		return nil, fmt.Errorf("tls: %s, %s and %s must be set together", EnvCert, EnvKey, EnvCA)
	}
	return FromPEM(pems[0], pems[1], pems[2])
}

// Env is c as the environment of a process that should use it, in the _PEM
// forms (nothing for a nil c).
func (c *Config) Env() []string {
	if c == nil {
		return nil
	}
	return []string{
		EnvCert + pemTail + "=" + string(c.certPEM),
		EnvKey + pemTail + "=" + string(c.keyPEM),
		EnvCA + pemTail + "=" + string(c.caPEM),
	}
}

// Client runs the dialer's side of TLS on conn and returns the encrypted
// connection; a nil c returns conn. On error conn is closed.
func (c *Config) Client(conn net.Conn) (net.Conn, error) {
	if c == nil {
		return conn, nil
	}
	return handshake(tls.Client(conn, c.client), conn)
}

// Server runs the acceptor's side of TLS on conn; a nil c returns conn. On
// error conn is closed.
func (c *Config) Server(conn net.Conn) (net.Conn, error) {
	if c == nil {
		return conn, nil
	}
	return handshake(tls.Server(conn, c.server), conn)
}

func handshake(tc *tls.Conn, raw net.Conn) (net.Conn, error) {
	raw.SetDeadline(time.Now().Add(HandshakeTimeout))
	if err := tc.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w (both sides need --tls-cert, --tls-key and --tls-ca from one CA)", raw.RemoteAddr(), err)
	}
	raw.SetDeadline(time.Time{})
	return tc, nil
}

// handshakeRecord is the first byte of a TLS connection (a handshake
// record); pmrun's own handshake starts with 'P'.
const handshakeRecord = 0x16

// Opens tells whether the first byte waiting on conn opens a TLS handshake,
// without consuming it, waiting for it at most HandshakeTimeout.
func Opens(conn net.Conn) (bool, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false, fmt.Errorf("tls: connection %T has no file descriptor", conn)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false, err
	}
	conn.SetReadDeadline(time.Now().Add(HandshakeTimeout))
	defer conn.SetReadDeadline(time.Time{})
	var b [1]byte
	var n int
	var rerr error
	err = raw.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
		return rerr != syscall.EAGAIN
	})
	switch {
	case err != nil:
		return false, err
	case rerr != nil:
		return false, rerr
	case n == 0:
		return false, io.EOF
	}
	return b[0] == handshakeRecord, nil
}

// Required is what a server with TLS answers a plain connection before
// closing it, so that a dialer without TLS can say what is missing.
const Required = "PMRN-TLS-REQUIRED\n"

// Refuse answers a plain connection to a TLS server with Required, and
// returns the error to log.
func Refuse(conn net.Conn) error {
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	conn.Write([]byte(Required))
	return errors.New("tls: a connection without TLS (this side has --tls-cert, --tls-key and --tls-ca; the peer has not)")
}
