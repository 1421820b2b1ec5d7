package node

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/pmrun/pmrun/internal/ctl"
	"github.com/pmrun/pmrun/internal/tlsx"
	"github.com/pmrun/pmrun/internal/wire"
)

// Default ports of an agent: gossip (TCP and UDP, memberlist's default) and the
// control service that launchers connect to.
const (
	DefaultGossipPort  = 7946
	DefaultControlPort = 7947
)

// EnvClusterKey holds the cluster key when no --cluster-key flag is given.
const EnvClusterKey = "PMRUN_CLUSTER_KEY"

// ErrKeyMismatch is returned when a launcher and an agent do not hold the same
// cluster key (or one of them has none).
var ErrKeyMismatch = errors.New("cluster key mismatch")

// ErrNotControl is returned when a launcher connects to a port that does not
// speak the control protocol, such as an agent's gossip port.
var ErrNotControl = errors.New("a gossip port, not an agent's control port")

// gossipKey derives memberlist's AES-256 key from a cluster key of any length.
func gossipKey(key string) []byte {
	if key == "" {
		return nil
	}
	k := sha256.Sum256([]byte("pmrun-gossip\x00" + key))
	return k[:]
}

// controlSecret derives the secret that control connections prove knowledge of.
// Without a key it is a fixed value: the handshake then only tells pmrun from
// other protocols, and an agent without a key refuses a launcher with one (and
// the other way round).
func controlSecret(key string) []byte {
	k := sha256.Sum256([]byte("pmrun-control\x00" + key))
	return k[:]
}

// WithPort returns addr with port added when it has none.
func WithPort(addr string, port int) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(addr, strconv.Itoa(port))
}

// dialControl opens an authenticated control session (ctl.NodeTiming) to
// the agent at addr; ctx bounds the connection.
func dialControl(ctx context.Context, addr, key string, tc *tlsx.Config) (*yamux.Session, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("agent %s: %w", addr, err)
	}
	rc := &recordingConn{Conn: conn}
	s, err := ctl.Client(rc, controlSecret(key), tc, wire.RoleControl, 0, ctl.NodeTiming())
	switch {
	case err == nil:
		return s, nil
	case tc == nil && bytes.HasPrefix(rc.read, []byte(tlsx.Required)):
		return nil, fmt.Errorf("agent %s requires TLS: give --tls-cert, --tls-key and --tls-ca (or $%s, $%s, $%s) of its CA", addr, tlsx.EnvCert, tlsx.EnvKey, tlsx.EnvCA)
	case errors.Is(err, wire.ErrHandshake) && gossipReply(rc.read):
		return nil, fmt.Errorf("%s is %w: give the control port (default %d)", addr, ErrNotControl, DefaultControlPort)
	case errors.Is(err, wire.ErrHandshake):
		return nil, fmt.Errorf("agent %s refused the connection: %w (the launcher's --cluster-key / %s must be the agent's)", addr, ErrKeyMismatch, EnvClusterKey)
	}
	return nil, fmt.Errorf("agent %s: %w", addr, err)
}

// recordingConn keeps the first bytes read from a connection.
type recordingConn struct {
	net.Conn
	read []byte
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if len(c.read) < 64 {
		c.read = append(c.read, p[:min(n, 64-len(c.read))]...)
	}
	return n, err
}

// gossipReply tells whether reply, what a peer sent back to pmrun's
// handshake before it failed, is how memberlist answers a stream it cannot
// read: nothing (the connection closed), or an error message (plain,
// compressed or encrypted). A pmrun agent answers with 48 random-looking
// bytes, which these prefixes match with a probability below 2^-30.
func gossipReply(reply []byte) bool {
	const errMsg, compressMsg, encryptMsg = 13, 9, 10 // memberlist's message types
	switch {
	case len(reply) == 0:
		return true
	case reply[0] == errMsg:
		return bytes.HasPrefix(reply[1:], []byte("\x81\xa5Error"))
	case reply[0] == compressMsg:
		return bytes.HasPrefix(reply[1:], []byte("\x82\xa4Algo"))
	case reply[0] == encryptMsg:
		return len(reply) > 5 && reply[1] == 0 && reply[2] == 0 && reply[5] <= 1 // length < 64 KiB, version 0 or 1
	}
	return false
}

// request is the first message on every stream a launcher opens to an agent,
// and the one an agent opens to a launcher for a rank's output.
type request struct {
	Op    string      `json:"op"` // "members", "job", "files", "stdin", "output", "tasks", "worker"
	Job   string      `json:"job,omitempty"`
	Spec  *remoteSpec `json:"spec,omitempty"`  // op "job"
	Tasks *taskSpec   `json:"tasks,omitempty"` // op "tasks"
	Rank  int         `json:"rank,omitempty"`  // op "output": the rank (or task worker); op "worker": the worker
	FD    int         `json:"fd,omitempty"`    // op "output": 1 stdout, 2 stderr
}

// remoteSpec is the part of a job that one node runs.
type remoteSpec struct {
	Program      string   `json:"program"`              // shipped file name, or a command on the node
	Shipped      bool     `json:"shipped"`              // the program arrives on the files stream
	Python       string   `json:"python,omitempty"`     // run Program as a script of this interpreter
	Args         []string `json:"args"`                 // after the program (or the script)
	Env          []string `json:"env"`                  // added to every rank's environment
	Ranks        []int    `json:"ranks"`                // world ranks this node runs
	Size         int      `json:"size"`                 // ranks in the job
	Rendezvous   string   `json:"rendezvous"`           // the launcher's rendezvous address
	Secret       string   `json:"secret"`               // hex job secret
	TagOutput    bool     `json:"tag_output"`           // (the launcher tags; kept for the record)
	Stdin        bool     `json:"stdin"`                // rank 0 is here and its stdin follows
	Requirements string   `json:"requirements"`         // pip requirements ("" none)
	NoMPI4py     bool     `json:"no_mpi4py"`            // do not shim mpi4py
	Files        bool     `json:"files"`                // a files bundle follows
	Threads      int      `json:"threads,omitempty"`    // threads per rank (0: the node's cores / its ranks)
	BindCores    bool     `json:"bind_cores,omitempty"` // pin each rank to its threads' share of the CPUs
}

// event is what an agent reports on a job's control stream, and what the
// launcher sends back ("start", "kill").
type event struct {
	Ev     string `json:"ev"` // agent: ready, progress, started, exit, error, env, done, worker, lost; launcher: start, kill
	Rank   int    `json:"rank,omitempty"`
	Worker int    `json:"worker,omitempty"` // ev "worker", "lost": the task worker's number on its node
	Pid    int    `json:"pid,omitempty"`    // ev "worker": its process id
	Code   int    `json:"code,omitempty"`   // ev "exit": the rank's status; ev "error": the job's (0: ExitLaunch)
	Msg    string `json:"msg,omitempty"`
	Signal int    `json:"signal,omitempty"`
	Cached bool   `json:"cached,omitempty"` // ev "env": the Python environment was reused
	Detail bool   `json:"detail,omitempty"` // ev "progress": within a step (pip's current package)
}

// jsonStream reads and writes JSON values, one per line, on a stream.
type jsonStream struct {
	c   net.Conn
	in  *budgetReader
	dec *json.Decoder
	enc *json.Encoder
}

// newJSONStream returns a stream of JSON values on c, each read at most max
// bytes long (DefaultMaxRequest when max is 0).
func newJSONStream(c net.Conn, max int) *jsonStream {
	in := &budgetReader{r: c, max: int64(cmp.Or(max, DefaultMaxRequest))}
	return &jsonStream{c: c, in: in, dec: json.NewDecoder(in), enc: json.NewEncoder(c)}
}

// read decodes the next value into v. A value longer than the stream's
// limit fails with ErrRequestLarge, and the stream is unusable after it.
func (s *jsonStream) read(v any) error {
	s.in.left = s.in.max
	return s.dec.Decode(v)
}

// budgetReader reads r until left bytes have gone by since read reset it
// (json.Decoder buffers ahead, so a value may have up to one buffer's worth
// on top), then fails.
type budgetReader struct {
	r         io.Reader
	left, max int64
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("%w: a message longer than %d bytes", ErrRequestLarge, b.max)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

// DefaultMaxRequest is the default bound of one control message (a stream's
// first request, or an event on a job's control stream): the program and
// files travel apart, so a request is a job's command line and environment.
// AgentConfig.MaxRequest (pmrun node --max-request, PMRUN_MAX_REQUEST)
// changes an agent's.
const DefaultMaxRequest = 1 << 20

// ErrRequestLarge is returned for a control message over its limit.
var ErrRequestLarge = errors.New("control message over the limit (AgentConfig.MaxRequest: pmrun node --max-request, PMRUN_MAX_REQUEST)")

// writeRequest sends a stream's first message: its length (4 bytes, big
// endian) and JSON. Raw bytes may follow it (files, stdin, output).
func writeRequest(c io.Writer, r *request) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if len(b) > DefaultMaxRequest {
		return fmt.Errorf("a request of %d bytes: %w of %d bytes", len(b), ErrRequestLarge, DefaultMaxRequest)
	}
	hdr := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(b)), uint32(len(b)))
	_, err = c.Write(append(hdr, b...))
	return err
}

// readRequest reads a stream's first message, at most max bytes
// (DefaultMaxRequest when max is 0), bounded in time.
func readRequest(c net.Conn, max int) (*request, error) {
	max = cmp.Or(max, DefaultMaxRequest)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return nil, fmt.Errorf("bad request: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("bad request: %d bytes: %w of %d bytes", n, ErrRequestLarge, max)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, fmt.Errorf("bad request: %w", err)
	}
	var r request
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("bad request: %w", err)
	}
	return &r, nil
}
