package tlsx

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func generate(t *testing.T) (Files, *Config) {
	t.Helper()
	f, err := Generate(t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.Load()
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

// pair runs client and server on the two ends of a loopback connection and
// returns their errors, and what the server read when both succeeded.
func pair(t *testing.T, client, server *Config) (cerr, serr error, got string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			serr = err
			return
		}
		tc, err := server.Server(c)
		if err != nil {
			serr = err
			return
		}
		defer tc.Close()
		b, _ := io.ReadAll(io.LimitReader(tc, 5))
		got = string(b)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tc, cerr := client.Client(c)
	if cerr == nil {
		tc.Write([]byte("hello"))
		defer tc.Close()
	} else {
		c.Close()
	}
	<-done
	return cerr, serr, got
}

func TestMutual(t *testing.T) {
	_, c := generate(t)
	cerr, serr, got := pair(t, c, c)
	if cerr != nil || serr != nil || got != "hello" {
		t.Fatalf("client %v, server %v, read %q", cerr, serr, got)
	}
}

// A certificate from another CA is refused, whichever side holds it. (A
// stranger's client refuses the server's certificate first, so the server
// hears "bad certificate".)
func TestOtherCARefused(t *testing.T) {
	_, c := generate(t)
	_, stranger := generate(t)
	if _, serr, got := pair(t, stranger, c); serr == nil || got != "" {
		t.Errorf("server accepted a client of another CA: %v", serr)
	}
	f, _ := generate(t)
	g, _ := generate(t)
	impostor, err := (Files{Cert: g.Cert, Key: g.Key, CA: f.CA}).Load() // trusts f's CA, holds g's certificate
	if err != nil {
		t.Fatal(err)
	}
	server, _ := f.Load()
	if _, serr, got := pair(t, impostor, server); serr == nil || got != "" || !strings.Contains(serr.Error(), "not signed by this cluster's CA") {
		t.Errorf("server accepted a client certificate of another CA: %v", serr)
	}
	if cerr, _, _ := pair(t, c, stranger); cerr == nil || !strings.Contains(cerr.Error(), "not signed by this cluster's CA") {
		t.Errorf("client accepted a server of another CA: %v", cerr)
	}
}

// A plain (non-TLS) dialer is refused by a TLS server, within the handshake
// timeout, and a nil Config passes the connection through.
func TestPlainRefused(t *testing.T) {
	_, c := generate(t)
	var off *Config
	start := time.Now()
	_, serr, got := pair(t, off, c)
	if serr == nil || got != "" {
		t.Fatalf("TLS server took a plain connection: %v, read %q", serr, got)
	}
	if d := time.Since(start); d > HandshakeTimeout+2*time.Second {
		t.Errorf("refusal took %v", d)
	}
	if cerr, serr, got := pair(t, off, off); cerr != nil || serr != nil || got != "hello" {
		t.Errorf("TLS off: client %v, server %v, read %q", cerr, serr, got)
	}
}

func TestLoadErrors(t *testing.T) {
	f, _ := generate(t)
	if c, err := (Files{}).Load(); c != nil || err != nil {
		t.Errorf("no files: %v %v, want TLS off", c, err)
	}
	if _, err := (Files{Cert: f.Cert}).Load(); err == nil || !strings.Contains(err.Error(), "--tls-key --tls-ca") {
		t.Errorf("partial files: %v", err)
	}
	if _, err := (Files{Cert: f.Cert, Key: f.CA, CA: f.CA}).Load(); err == nil || !strings.Contains(err.Error(), "certificate and key") {
		t.Errorf("CA as key: %v", err)
	}
	if _, err := (Files{Cert: f.Cert, Key: f.Key, CA: f.Key}).Load(); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("key as CA: %v", err)
	}
	if _, err := Generate(filepath.Dir(f.Cert), time.Hour); err == nil || !strings.Contains(err.Error(), "not overwriting") {
		t.Errorf("Generate over existing files: %v", err)
	}
	if st, err := os.Stat(f.Key); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v %v", st.Mode(), err)
	}
}

// FromEnv reads paths and PEM text alike, and Env round-trips.
func TestEnv(t *testing.T) {
	f, c := generate(t)
	env := map[string]string{EnvCert: f.Cert, EnvKey: f.Key, EnvCA: f.CA}
	fromPaths, err := FromEnv(func(k string) string { return env[k] })
	if err != nil || fromPaths == nil {
		t.Fatalf("paths: %v %v", fromPaths, err)
	}
	env = map[string]string{}
	for _, kv := range c.Env() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	fromPEM, err := FromEnv(func(k string) string { return env[k] })
	if err != nil || fromPEM == nil {
		t.Fatalf("PEM: %v %v", fromPEM, err)
	}
	if cerr, serr, got := pair(t, fromPaths, fromPEM); cerr != nil || serr != nil || got != "hello" {
		t.Errorf("client %v, server %v, read %q", cerr, serr, got)
	}
	if none, err := FromEnv(func(string) string { return "" }); none != nil || err != nil {
		t.Errorf("empty environment: %v %v", none, err)
	}
	if _, err := FromEnv(func(k string) string { return map[string]string{EnvCert: f.Cert}[k] }); err == nil {
		t.Error("a certificate alone was taken")
	}
	var off *Config
	if off.Env() != nil {
		t.Error("nil Config has an environment")
	}
}
