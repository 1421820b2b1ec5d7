package node

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/yamux"

	"github.com/pmrun/pmrun/internal/ctl"
	"github.com/pmrun/pmrun/internal/tlsx"
	"github.com/pmrun/pmrun/internal/wire"
)

// AgentConfig configures a node agent (`pmrun node`).
type AgentConfig struct {
	Name        string   // node name, unique in the cluster (default: DefaultName)
	Bind        string   // gossip address host:port (default 0.0.0.0:7946; port 0 picks one)
	Advertise   string   // gossip address others reach this node at (default: chosen from Bind)
	ControlPort int      // control service port on Bind's host (0 picks one)
	Join        []string // gossip addresses (host[:port], DNS names re-resolved) to join
	Key         string   // cluster key: encrypts gossip and authenticates control connections
	// TLS, when not nil, is the mutual TLS of control connections (both
	// ways) and of this node's ranks (pmrun node --tls-cert, --tls-key,
	// --tls-ca).
	TLS      *tlsx.Config
	Insecure bool              // allow a non-loopback bind without a key
	Labels   map[string]string // advertised with the node
	Cores    int               // slots offered to jobs (default: the number of CPUs)
	Workers  int               // task workers started for a task hub that asks for no number (default: Cores)
	WorkDir  string            // where jobs' files and Python environments go (default: DefaultWorkDir)
	// JobUsers runs each job and task session as a user of its own (see
	// JobUserBase); the agent must run as root. pmrun node --job-users.
	JobUsers bool
	Logf     func(format string, args ...any)
	// MaxBundle bounds what a job's program and files bundle may unpack to,
	// in bytes of tar stream (0: DefaultMaxBundle, 8 GiB). pmrun node
	// --max-bundle, PMRUN_MAX_BUNDLE.
	MaxBundle int64
	// MaxRequest bounds one control message from a launcher or task hub (a
	// stream's first request, an event on a job's control stream), in bytes
	// (0: DefaultMaxRequest, 1 MiB). pmrun node --max-request,
	// PMRUN_MAX_REQUEST.
	MaxRequest int
	// MaxMeta bounds the gossip metadata of another node that this one
	// reads, in bytes (0: DefaultMaxMeta, memberlist's 512, which also
	// bounds this node's own). A node whose metadata is longer, or
	// malformed, is listed without a control address, so no job goes to it.
	// pmrun node --max-meta.
	MaxMeta int
	// Gossip timings (defaults: probe every 200 ms, 100 ms timeout, suspicion
	// multiplier 2: a crashed node is declared dead in about 1 s on a LAN).
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	SuspicionMult int
}

// Member is a node as the cluster's gossip knows it.
type Member struct {
	Name    string            `json:"name"`
	Gossip  string            `json:"gossip"`  // host:port
	Control string            `json:"control"` // host:port launchers connect to
	Cores   int               `json:"cores"`
	Labels  map[string]string `json:"labels,omitempty"`
	State   string            `json:"state"` // alive, suspect, dead, left
	// Task workers: the default number per task hub (--workers), and those
	// running for hubs now, busy (running a call) or idle, as last gossiped.
	Workers int `json:"workers"`
	Busy    int `json:"busy"`
	Idle    int `json:"idle"`
}

// meta is what a node advertises through gossip (at most 512 bytes).
type meta struct {
	Control int               `json:"c"`
	Cores   int               `json:"n"`
	Labels  map[string]string `json:"l,omitempty"`
	Leaving bool              `json:"x,omitempty"` // set just before a graceful leave
	Workers int               `json:"w,omitempty"` // task workers per hub
	Busy    int               `json:"b,omitempty"` // task workers running a call
	Idle    int               `json:"i,omitempty"` // task workers waiting for one
}

// Agent is a running node agent: a gossip member that runs jobs' ranks.
type Agent struct {
	cfg    AgentConfig
	ml     *memberlist.Memberlist
	ln     net.Listener // the control port, which srv serves
	srv    *ctl.Server  // launchers' control sessions
	lock   *os.File     // holds the work directory
	secret []byte
	logf   func(format string, args ...any)

	gossip  string // advertised gossip address
	control string // advertised control address

	mu      sync.Mutex
	md      meta                 // what this node advertises
	meta    []byte               // md encoded
	members map[string]Member    // every node seen, by name, as gossip last told
	pools   map[*workerPool]bool // task workers of hubs' sessions
	changed chan struct{}        // closed at the next change of members (nil: nobody waits)
	jobs    map[string]*agentJob
	closed  bool

	envs *venvCache // WORK_DIR/venvs

	joined    chan struct{} // closed once this node has joined another
	conflicts chan Member   // another node claiming this node's name
	refused   chan error    // receives why the cluster refused this node
	quit      chan struct{}
	wg        sync.WaitGroup
	stop      sync.Once
}

// StartAgent starts an agent: it binds the gossip and control ports, joins the
// cluster in the background (retrying until a join address answers), and
// serves launchers until Close.
func StartAgent(cfg AgentConfig) (*Agent, error) {
	if cfg.Bind == "" {
		cfg.Bind = net.JoinHostPort("0.0.0.0", strconv.Itoa(DefaultGossipPort))
	}
	host, portStr, err := net.SplitHostPort(WithPort(cfg.Bind, DefaultGossipPort))
	if err != nil {
		return nil, fmt.Errorf("node: --bind %q: %w", cfg.Bind, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("node: --bind %q: bad port", cfg.Bind)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, fmt.Errorf("node: --bind %q: the host must be an IP address", cfg.Bind)
	}
	if cfg.Key == "" && !ip.IsLoopback() && !cfg.Insecure {
		return nil, fmt.Errorf("node: refusing to bind %s without a cluster key: anyone who reaches it could run programs here; give --cluster-key (or %s), or --insecure on a private network", host, EnvClusterKey)
	}
	if cfg.MaxBundle < 0 || cfg.MaxRequest < 0 || cfg.MaxMeta < 0 {
		return nil, fmt.Errorf("node: limits must not be negative (MaxBundle %d, MaxRequest %d, MaxMeta %d)", cfg.MaxBundle, cfg.MaxRequest, cfg.MaxMeta)
	}
	cfg.MaxBundle = cmp.Or(cfg.MaxBundle, DefaultMaxBundle)
	cfg.MaxRequest = cmp.Or(cfg.MaxRequest, DefaultMaxRequest)
	cfg.MaxMeta = cmp.Or(cfg.MaxMeta, DefaultMaxMeta)
	if cfg.Cores <= 0 {
		cfg.Cores = runtime.NumCPU()
	}
	if cfg.Workers <= 0 {
		cfg.Workers = cfg.Cores
	}
	if cfg.Logf == nil {
		cfg.Logf = log.New(os.Stderr, "", log.LstdFlags).Printf
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(cfg.ControlPort)))
	if err != nil {
		return nil, fmt.Errorf("node: control port: %w", err)
	}
	if cfg.Name == "" {
		if cfg.Name, err = DefaultName(ln.Addr().(*net.TCPAddr).Port); err != nil {
			ln.Close()
			return nil, err
		}
	}
	if cfg.WorkDir == "" {
		cfg.WorkDir = DefaultWorkDir(cfg.Name)
	}
	if cfg.JobUsers {
		if err := checkJobUsers(); err != nil {
			return nil, err
		}
	}
	lock, err := prepareWorkDir(cfg.WorkDir)
	if err == nil && cfg.JobUsers {
		if err = openWorkDir(cfg.WorkDir); err != nil {
			lock.Close()
		}
	}
	if err != nil {
		ln.Close()
		return nil, err
	}
	a := &Agent{
		cfg: cfg, logf: cfg.Logf, secret: controlSecret(cfg.Key), ln: ln, lock: lock,
		members: map[string]Member{}, jobs: map[string]*agentJob{},
		pools:  map[*workerPool]bool{},
		joined: make(chan struct{}), conflicts: make(chan Member, 1), refused: make(chan error, 1),
		quit: make(chan struct{}), envs: &venvCache{dir: filepath.Join(cfg.WorkDir, "venvs")},
	}
	a.md = meta{Control: a.ln.Addr().(*net.TCPAddr).Port, Cores: cfg.Cores, Labels: cfg.Labels, Workers: cfg.Workers}
	a.meta, err = json.Marshal(a.md)
	// Room is kept for the task workers' counts, which change.
	if err != nil || len(a.meta)+len(`,"b":999999,"i":999999`) > memberlist.MetaMaxSize {
		a.ln.Close()
		a.lock.Close()
		return nil, fmt.Errorf("node: labels too long: node metadata is limited to %d bytes", memberlist.MetaMaxSize)
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr, mc.BindPort = host, port
	if cfg.Advertise != "" {
		ah, ap, err := net.SplitHostPort(WithPort(cfg.Advertise, port))
		if err != nil {
			a.ln.Close()
			a.lock.Close()
			return nil, fmt.Errorf("node: --advertise %q: %w", cfg.Advertise, err)
		}
		mc.AdvertiseAddr = ah
		mc.AdvertisePort, _ = strconv.Atoi(ap)
	}
	if cfg.Advertise == "" && ip.IsUnspecified() && len(cfg.Join) > 0 {
		// Bound to every interface of a multi-homed container: advertise the
		// address on the route to the nodes it joins (memberlist would take
		// the first private address, maybe one of another network).
		if a := localAddrFor(WithPort(cfg.Join[0], DefaultGossipPort)); a != "" && !net.ParseIP(a).IsLoopback() {
			mc.AdvertiseAddr, mc.AdvertisePort = a, port
		}
	}
	mc.SecretKey = gossipKey(cfg.Key)
	mc.ProbeInterval = cmp.Or(cfg.ProbeInterval, 200*time.Millisecond)
	mc.ProbeTimeout = cmp.Or(cfg.ProbeTimeout, 100*time.Millisecond)
	mc.SuspicionMult = cmp.Or(cfg.SuspicionMult, 2)
	mc.GossipInterval = 100 * time.Millisecond
	mc.PushPullInterval = 2 * time.Second
	// A node that comes back under its name at another address (a restarted
	// container) takes the name over as soon as its old self is found dead,
	// not after GossipToTheDeadTime (30 s).
	mc.DeadNodeReclaimTime = mc.ProbeInterval
	mc.Delegate = (*agentDelegate)(a)
	mc.Events = (*agentEvents)(a)
	mc.Conflict = (*agentEvents)(a)
	mc.Logger = log.New(&logWriter{logf: a.logf, name: cfg.Name}, "", 0)
	a.ml, err = memberlist.Create(mc)
	if err != nil {
		a.ln.Close()
		a.lock.Close()
		return nil, fmt.Errorf("node: gossip: %w", err)
	}
	// memberlist changes the nodes it hands out without locking: read them
	// only in its callbacks, and the local one now.
	local := a.ml.LocalNode()
	a.gossip = local.Address()
	a.control = net.JoinHostPort(local.Addr.String(), strconv.Itoa(a.ln.Addr().(*net.TCPAddr).Port))
	a.srv, err = ctl.NewServer(a.ln, ctl.ServerConfig{
		Secret: a.secret, TLS: cfg.TLS, Role: wire.RoleControl, RoleName: "a control connection", Timing: ctl.NodeTiming(),
		Refused: func(remote net.Addr, err error) {
			a.logf("pmrun node %s: refused a connection from %s: %v", cfg.Name, remote, err)
		},
		Handle: func(s *yamux.Session, _ uint32, st net.Conn) { a.serveStream(s, st) },
	})
	if err != nil {
		a.ml.Shutdown()
		a.ln.Close()
		a.lock.Close()
		return nil, fmt.Errorf("node: control service: %w", err)
	}
	a.wg.Add(2)
	go a.joinLoop()
	go a.gossipCounts()
	return a, nil
}

// DefaultName is a node's name when none is given: the host name, followed by
// "-PORT" when the control port is not the default one, so that agents sharing
// a host get names of their own.
func DefaultName(controlPort int) (string, error) {
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("node: no --name and no host name: %w", err)
	}
	if controlPort != DefaultControlPort {
		h += "-" + strconv.Itoa(controlPort)
	}
	return h, nil
}

// DefaultWorkDir is a node's work directory when none is given.
func DefaultWorkDir(name string) string {
	return filepath.Join(os.TempDir(), "pmrun-node-"+sanitize(name))
}

// ErrWorkDirInUse is returned when another running agent holds the work
// directory.
var ErrWorkDirInUse = errors.New("work directory in use")

// prepareWorkDir creates dir, locks it for this agent (the lock is released
// when the returned file is closed, or the process exits) and removes the job
// directories an agent killed earlier left in it; the Python environments
// (venvs/) are kept for reuse.
func prepareWorkDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("node: work directory: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("node: work directory: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("node: %w: another agent runs in %s; give this one its own --work-dir (or --name)", ErrWorkDirInUse, dir)
	}
	if err := os.RemoveAll(filepath.Join(dir, "jobs")); err != nil {
		lock.Close()
		return nil, fmt.Errorf("node: removing old jobs from the work directory: %w", err)
	}
	return lock, nil
}

// sanitize keeps a node name usable as a file name.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == 0 || r == '\\' {
			return '_'
		}
		return r
	}, s)
}

// Name returns the node's name.
func (a *Agent) Name() string { return a.cfg.Name }

// ControlAddr returns the address launchers connect to (the advertised host).
func (a *Agent) ControlAddr() string { return a.control }

// GossipAddr returns the advertised gossip address, for others to join.
func (a *Agent) GossipAddr() string { return a.gossip }

// Joined is closed once the node has joined another (never, without Join).
func (a *Agent) Joined() <-chan struct{} { return a.joined }

// Refused receives a *NameTakenError when the cluster it joins already has a
// live node of this name; the agent then stops, as by Close.
func (a *Agent) Refused() <-chan error { return a.refused }

// NameTakenError is why an agent is refused when another live node has its
// name.
type NameTakenError struct {
	Name string // the name
	By   string // the gossip address of the node that has it
}

func (e *NameTakenError) Error() string {
	return fmt.Sprintf("node name %s is already used by %s; pick another with --name", e.Name, e.By)
}

// Members lists the cluster's nodes as this node sees them, sorted by name:
// live ones and those that left or died.
func (a *Agent) Members() []Member {
	a.mu.Lock()
	out := make([]Member, 0, len(a.members))
	for _, m := range a.members {
		out = append(out, m)
	}
	a.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// memberOf returns what n's gossip says of it, its metadata read with the
// limit max (see decodeMeta).
func memberOf(n *memberlist.Node, max int) Member {
	m := Member{Name: n.Name, Gossip: n.Address()}
	if md, err := decodeMeta(n.Meta, max); err == nil {
		m.Control = net.JoinHostPort(n.Addr.String(), strconv.Itoa(md.Control))
		m.Cores, m.Labels = md.Cores, md.Labels
		m.Workers, m.Busy, m.Idle = md.Workers, md.Busy, md.Idle
	}
	return m
}

// setMeta changes what this node advertises (gossiped at the next
// UpdateNode).
func (a *Agent) setMeta(change func(md *meta)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	change(&a.md)
	a.meta, _ = json.Marshal(a.md)
}

// countsInterval is how often an agent gossips its task workers' counts when
// they changed: a call may last microseconds, and every update is a gossip
// broadcast, so `pmrun members` shows them as of at most this long ago.
const countsInterval = 500 * time.Millisecond

// gossipCounts advertises the busy and idle task workers when they change.
func (a *Agent) gossipCounts() {
	defer a.wg.Done()
	t := time.NewTicker(countsInterval)
	defer t.Stop()
	lastBusy, lastIdle := 0, 0
	for {
		select {
		case <-a.quit:
			return
		case <-t.C:
		}
		running, busy := a.taskCounts()
		if busy == lastBusy && running-busy == lastIdle {
			continue
		}
		lastBusy, lastIdle = busy, running-busy
		a.setMeta(func(md *meta) { md.Busy, md.Idle = lastBusy, lastIdle })
		a.ml.UpdateNode(time.Second)
	}
}

// Leave announces that this node leaves the cluster, then stops it (Close).
func (a *Agent) Leave() error {
	// memberlist tells a leave from a death to its own node only; the others
	// learn it from the metadata, updated first.
	a.setMeta(func(md *meta) { md.Leaving = true })
	a.ml.UpdateNode(time.Second)
	// Gossip may bring the update to a node after the leave itself, which it
	// would then record as a death: a push-pull with each live member hands
	// the update over first.
	var peers []string
	for _, m := range a.Members() {
		if m.Name != a.cfg.Name && m.State == "alive" {
			peers = append(peers, m.Gossip)
		}
	}
	if len(peers) > 0 {
		a.ml.Join(peers) // best effort: a member it misses sees a death, as before
	}
	err := a.ml.Leave(2 * time.Second)
	return errors.Join(err, a.Close())
}

// Close stops the agent without announcing it: other nodes find it dead, as
// after a crash. Running jobs' ranks are killed.
func (a *Agent) Close() error {
	var err error
	a.stop.Do(func() {
		close(a.quit)
		a.mu.Lock()
		a.closed = true
		jobs := make([]*agentJob, 0, len(a.jobs))
		for _, j := range a.jobs {
			jobs = append(jobs, j)
		}
		a.mu.Unlock()
		for _, j := range jobs {
			j.sp.kill(9) // SIGKILL
		}
		err = a.srv.Close() // closes the sessions, waits for their jobs
		a.wg.Wait()
		err = errors.Join(err, a.ml.Shutdown(), a.lock.Close())
	})
	return err
}

// dropSessions closes every launcher's connection, as a network cut would
// (for tests); the jobs' ranks are then killed as when a launcher vanishes.
func (a *Agent) dropSessions() { a.srv.DropSessions() }

// joinLoop joins the configured addresses, resolving names again on every
// try, every 500 ms until another node answers; afterwards it checks every
// 5 s and joins again if this node has been left alone.
func (a *Agent) joinLoop() {
	defer a.wg.Done()
	if len(a.cfg.Join) == 0 {
		return
	}
	addrs := make([]string, len(a.cfg.Join))
	for i, j := range a.cfg.Join {
		addrs[i] = WithPort(j, DefaultGossipPort)
	}
	delay, warned := 500*time.Millisecond, false
	for {
		if delay > 500*time.Millisecond && a.ml.NumMembers() > 1 {
			// Joined, and gossip keeps it so: ask again only if this node
			// finds itself alone (every DNS answer would get a push-pull).
			select {
			case <-a.quit:
				return
			case <-time.After(delay):
			}
			continue
		}
		n, err := a.ml.Join(addrs)
		if n > 0 && delay == 500*time.Millisecond {
			// The first join: the others' states have been merged, and a
			// live node of this name among them has been reported.
			if err := a.checkConflict(); err != nil {
				a.refused <- err
				go a.Close() // Close waits for this goroutine
				return
			}
		}
		if n > 0 && a.ml.NumMembers() > 1 {
			select {
			case <-a.joined:
			default:
				close(a.joined)
			}
			delay = 5 * time.Second
		} else if err != nil && !warned {
			a.logf("pmrun node %s: joining %s: %s (retrying)", a.cfg.Name, strings.Join(addrs, ","), joinError(err))
			warned = true
		}
		select {
		case <-a.quit:
			return
		case <-time.After(delay):
		}
	}
}

// checkConflict tells whether a node that claimed this node's name in the
// states it joined is alive: its control service answers under that name.
// Then this node is a duplicate. A node that does not answer is this node's
// former self (a restarted container, or a stopped process), which the others
// will find dead and replace by this one.
func (a *Agent) checkConflict() error {
	select {
	case other := <-a.conflicts:
		if other.Control == "" {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, self, err := queryMembers(ctx, other.Control, a.cfg.Key, a.cfg.TLS); err != nil || self != a.cfg.Name {
			return nil
		}
		return &NameTakenError{Name: a.cfg.Name, By: other.Gossip}
	default:
		return nil
	}
}

// serveStream serves a stream that a launcher (or a task hub) opened on its
// control session s.
func (a *Agent) serveStream(s *yamux.Session, st net.Conn) {
	req, err := readRequest(st, a.cfg.MaxRequest)
	if err != nil {
		if errors.Is(err, ErrRequestLarge) { // the launcher shows it as the job's error
			err = fmt.Errorf("node %s: %w", a.cfg.Name, err)
			a.logf("pmrun %v", err)
			json.NewEncoder(st).Encode(event{Ev: "error", Msg: err.Error()})
		}
		st.Close()
		return
	}
	switch req.Op {
	case "members":
		defer st.Close()
		json.NewEncoder(st).Encode(membersReply{Self: a.cfg.Name, Members: a.Members()})
	case "job":
		a.runJob(s, st, req)
	case "tasks":
		a.runTasks(s, st, req)
	case "files", "stdin":
		a.mu.Lock()
		j := a.jobs[req.Job]
		a.mu.Unlock()
		if j == nil {
			st.Close()
			return
		}
		j.attach(req.Op, st)
	default:
		st.Close()
	}
}

// agentDelegate gives memberlist the node's metadata.
type agentDelegate Agent

func (d *agentDelegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.meta
}

func (d *agentDelegate) NotifyMsg([]byte)                           {}
func (d *agentDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *agentDelegate) LocalState(join bool) []byte                { return nil }
func (d *agentDelegate) MergeRemoteState(buf []byte, join bool)     {}

// agentEvents keeps the member table (memberlist calls these holding its lock,
// so the node is read safely here).
type agentEvents Agent

func (e *agentEvents) NotifyJoin(n *memberlist.Node) {
	if _, err := decodeMeta(n.Meta, e.cfg.MaxMeta); err != nil {
		e.logf("pmrun node %s: node %s is listed without a control address: %v", e.cfg.Name, n.Name, err)
	}
	e.set(memberOf(n, e.cfg.MaxMeta), "alive")
}

func (e *agentEvents) NotifyUpdate(n *memberlist.Node) { e.set(memberOf(n, e.cfg.MaxMeta), "alive") }

func (e *agentEvents) NotifyLeave(n *memberlist.Node) {
	// n.State is not updated for this event: tell a leave by the metadata.
	state := "dead"
	if md, err := decodeMeta(n.Meta, e.cfg.MaxMeta); err == nil && md.Leaving {
		state = "left"
	}
	e.set(memberOf(n, e.cfg.MaxMeta), state)
}

// NotifyConflict is told of a node claiming a known node's name from another
// address; one claiming this node's own name is kept for checkConflict.
func (e *agentEvents) NotifyConflict(existing, other *memberlist.Node) {
	if existing.Name != e.cfg.Name {
		return
	}
	select {
	case e.conflicts <- memberOf(other, e.cfg.MaxMeta):
	default:
	}
}

func (e *agentEvents) set(m Member, state string) {
	m.State = state
	e.mu.Lock()
	e.members[m.Name] = m
	if e.changed != nil {
		close(e.changed)
		e.changed = nil
	}
	e.mu.Unlock()
}

// membersChanged returns a channel closed at the next change of the member
// table: a wait for a membership state needs no polling.
func (a *Agent) membersChanged() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.changed == nil {
		a.changed = make(chan struct{})
	}
	return a.changed
}

// joinError says in one line why memberlist could not join: the cluster key
// for a gossip it could not decrypt.
func joinError(err error) string {
	s := err.Error()
	if keyMismatch(s) {
		return "the gossip could not be decrypted: its cluster key differs"
	}
	return strings.Join(strings.Fields(s), " ")
}

// keyMismatch tells whether a memberlist error means that the nodes' keys
// differ (or only one has a key).
func keyMismatch(s string) bool {
	return strings.Contains(s, "no installed keys could decrypt") ||
		strings.Contains(s, "encryption is not configured")
}

// logWriter sends memberlist's log lines (given without a time stamp) to the
// agent's logger, leaving out its debug chatter and saying what a failure to
// decrypt means.
type logWriter struct {
	logf func(format string, args ...any)
	name string
	// what was reported of which host, once each (log.Logger serialises
	// the calls to Write)
	reported map[string]bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	s := strings.TrimSpace(string(p))
	switch {
	case strings.Contains(s, "[DEBUG]"):
	case keyMismatch(s):
		w.once(s, "gossip from %s could not be decrypted: its cluster key differs")
	case strings.Contains(s, "remote state is not encrypted") || strings.Contains(s, "invalid msgType"):
		w.once(s, "%s sent something that is not gossip: a node without the cluster key, or a launcher given the gossip port instead of the control port")
	default:
		w.logf("pmrun node %s: %s", w.name, s)
	}
	return len(p), nil
}

// once logs what, formatted with the address a memberlist line s names
// ("from=ADDR"), unless it was logged for that host before: a peer retries
// every 500 ms.
func (w *logWriter) once(s, what string) {
	from := "a node"
	if _, f, ok := strings.Cut(s, "from="); ok {
		from = strings.Fields(f)[0]
	}
	host, _, _ := net.SplitHostPort(from)
	key := what + cmp.Or(host, from)
	if w.reported[key] {
		return
	}
	if w.reported == nil {
		w.reported = map[string]bool{}
	}
	w.reported[key] = true
	w.logf("pmrun node %s: "+what+" (reported once for %s)", w.name, from, cmp.Or(host, from))
}

type membersReply struct {
	Self    string   `json:"self"`
	Members []Member `json:"members"`
}

// QueryMembers asks the agent at addr (its control address; port 7947 if
// none is given) for the cluster's members.
func QueryMembers(ctx context.Context, addr, key string, tc *tlsx.Config) ([]Member, error) {
	ms, _, err := queryMembers(ctx, WithPort(addr, DefaultControlPort), key, tc)
	return ms, err
}

func queryMembers(ctx context.Context, addr, key string, tc *tlsx.Config) ([]Member, string, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout(ctx))
	defer cancel()
	s, err := dialControl(ctx, addr, key, tc)
	if err != nil {
		return nil, "", err
	}
	defer s.Close()
	st, err := s.Open()
	if err != nil {
		return nil, "", err
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(dialTimeout(ctx)))
	if err := writeRequest(st, &request{Op: "members"}); err != nil {
		return nil, "", err
	}
	var r membersReply
	if err := json.NewDecoder(io.LimitReader(st, 64<<20)).Decode(&r); err != nil {
		return nil, "", fmt.Errorf("agent %s: reading members: %w", addr, err)
	}
	return r.Members, r.Self, nil
}

func dialTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return 10 * time.Second
}
