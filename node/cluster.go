package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/pmrun/pmrun/internal/tlsx"
)

// ExitNodeLost is the job's status when a node was lost (its agent's
// connection closed or stopped answering) before its ranks finished.
const ExitNodeLost = 125

// Host is an agent given explicitly (-H, --hostfile): its control address and
// the number of ranks it may run (0: its cores).
type Host struct {
	Addr  string
	Slots int
}

// ClusterSpec is a job for agents: the job itself and where to run it.
type ClusterSpec struct {
	JobSpec
	Cluster      []string // control addresses of agents to learn the cluster from (--cluster)
	Hosts        []Host   // or exactly these agents (-H, --hostfile)
	Key          string   // cluster key
	MapBy        string   // "slot" (default: fill each node's cores) or "node" (round-robin)
	Ship         bool     // JobSpec.Program is a local file sent to the nodes (else a command there)
	Python       string   // run the program as a script of this interpreter on the nodes
	Files        string   // a directory whose contents every node gets in the ranks' directory
	FilesOfPy    bool     // Files is the script's own directory (see ScriptDirSize)
	Requirements string   // pip requirements for a Python job, installed once per node
	NoMPI4py     bool
	Terminal     bool // stderr is a terminal: environment builds show pip's packages too
	// ConnectTimeout bounds connecting to each agent to submit the job
	// (0: DefaultConnectTimeout, 10 s).
	ConnectTimeout time.Duration
}

// target is a node chosen to run ranks.
type target struct {
	name    string
	control string
	slots   int
	cores   int // the cores it advertises
	threads int // each of its ranks'
	ranks   []int
	sess    *yamux.Session
	ctl     *jsonStream
	wmu     sync.Mutex
	done    bool
	lost    bool // its session failed mid-job
}

func (t *target) send(ev event) {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if t.ctl != nil {
		t.ctl.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		t.ctl.enc.Encode(ev)
	}
}

// Nodes resolves where a job may run: the given hosts (asking each agent its
// name and cores), or the live members of the cluster an agent belongs to.
func clusterNodes(ctx context.Context, spec *ClusterSpec) ([]*target, error) {
	if len(spec.Hosts) > 0 {
		var ts []*target
		for _, h := range spec.Hosts {
			addr := WithPort(h.Addr, DefaultControlPort)
			self, _, err := queryAgent(ctx, addr, spec.Key, spec.TLS)
			if err != nil {
				return nil, err
			}
			slots := h.Slots
			if slots <= 0 {
				slots = self.Cores
			}
			ts = append(ts, &target{name: self.Name, control: addr, slots: max(slots, 1), cores: max(self.Cores, 1)})
		}
		return ts, nil
	}
	var errs []error
	for _, c := range spec.Cluster {
		_, ms, err := queryAgent(ctx, WithPort(c, DefaultControlPort), spec.Key, spec.TLS)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var ts []*target
		for _, m := range ms {
			if m.State == "alive" && m.Control != "" {
				ts = append(ts, &target{name: m.Name, control: m.Control, slots: max(m.Cores, 1), cores: max(m.Cores, 1)})
			}
		}
		if len(ts) == 0 {
			return nil, fmt.Errorf("agent %s knows no live node", c)
		}
		return ts, nil
	}
	return nil, errors.Join(errs...)
}

// ErrTooManyRanks is place's error when -np is more than --ppn ranks on
// every node.
var ErrTooManyRanks = errors.New("more ranks than --ppn on every node")

// place assigns ranks 0..np-1 to nodes, in the order of their names. With
// perNode > 0 each node gets perNode ranks in turn, np being at most perNode
// on every node (0: exactly that many); otherwise by slot fills each node up
// to its slots, by node deals them round-robin, and past the slots of all
// nodes ranks are dealt round-robin again (oversubscribing). It returns np.
func place(ts []*target, np, perNode int, mapBy string) (int, error) {
	if len(ts) == 0 {
		return 0, errors.New("no nodes to run on")
	}
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].name < ts[j].name })
	if perNode > 0 {
		return placePerNode(ts, np, perNode)
	}
	r := 0
	if mapBy == "slot" || mapBy == "" {
		for _, t := range ts {
			for range t.slots {
				if r == np {
					break
				}
				t.ranks = append(t.ranks, r)
				r++
			}
		}
	} else if mapBy != "node" {
		return 0, fmt.Errorf("--map-by %q: want slot or node", mapBy)
	}
	for i := 0; r < np; i++ {
		ts[i%len(ts)].ranks = append(ts[i%len(ts)].ranks, r)
		r++
	}
	return np, nil
}

// placePerNode gives each node of ts perNode of np ranks in turn (np 0: as
// many as that makes).
func placePerNode(ts []*target, np, perNode int) (int, error) {
	if np == 0 {
		np = perNode * len(ts)
	}
	if np > perNode*len(ts) {
		return 0, fmt.Errorf("-np %d: %w (--ppn %d × %d nodes = %d)", np, ErrTooManyRanks, perNode, len(ts), perNode*len(ts))
	}
	for r := range np {
		t := ts[r/perNode]
		t.ranks = append(t.ranks, r)
	}
	return np, nil
}

// localAddrFor returns this machine's address on the route to addr.
func localAddrFor(addr string) string {
	u, err := net.Dial("udp", addr) // no packet is sent: this only picks a route
	if err != nil {
		return ""
	}
	defer u.Close()
	h, _, _ := net.SplitHostPort(u.LocalAddr().String())
	return h
}

func rankList(rs []int) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = strconv.Itoa(r)
	}
	return strings.Join(s, ",")
}

// lostReason says why a node's control stream broke with err: the node
// stopped answering (its session's keepalive timed out: a stopped or cut-off
// node) or its connection closed (a crashed agent).
func lostReason(s *yamux.Session, err error) string {
	select {
	case <-s.CloseChan():
		err = cmp.Or(sessionErr(s), err)
	default:
	}
	if errors.Is(err, yamux.ErrKeepAliveTimeout) || errors.Is(err, yamux.ErrTimeout) {
		return "it stopped answering (keepalive timed out)"
	}
	select {
	case <-s.CloseChan():
		return "its connection closed"
	default:
	}
	if errors.Is(err, io.EOF) {
		return "its connection closed"
	}
	return err.Error()
}

// sessionBroke reports whether err, met on session s, is s breaking (closed,
// or its keepalive timed out) rather than the node answering wrongly.
func sessionBroke(s *yamux.Session, err error) bool {
	if s.IsClosed() {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, yamux.ErrKeepAliveTimeout) ||
		errors.Is(err, yamux.ErrTimeout) || errors.Is(err, yamux.ErrSessionShutdown) || errors.Is(err, yamux.ErrConnectionReset)
}

// sessionErr returns why the closed session s ended: accepting a stream on it
// returns that, once the streams it had queued are gone.
func sessionErr(s *yamux.Session) error {
	for range 16 {
		st, err := s.AcceptStream()
		if err != nil {
			return err
		}
		st.Close()
	}
	return nil
}

// queryAgent asks the agent at addr for its own name and the members it knows.
func queryAgent(ctx context.Context, addr, key string, tc *tlsx.Config) (Member, []Member, error) {
	ms, self, err := queryMembers(ctx, addr, key, tc)
	if err != nil {
		return Member{}, nil, err
	}
	for _, m := range ms {
		if m.Name == self {
			return m, ms, nil
		}
	}
	return Member{}, nil, fmt.Errorf("agent %s did not list itself", addr)
}
