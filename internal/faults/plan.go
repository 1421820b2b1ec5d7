package faults

import (
	"fmt"
	"math/rand"
	"time"
)

// Kind is a fault the harness injects.
type Kind string

// The faults. Each strikes once, at a random moment of the run.
const (
	None          Kind = "none"           // no fault: the run must give the right answer
	KillRank      Kind = "kill-rank"      // SIGKILL of a rank
	StopRank      Kind = "stop-rank"      // SIGSTOP of a rank for 5 s, past PMRUN_STOP_TIMEOUT (1 s)
	KillWorker    Kind = "kill-worker"    // SIGKILL of a task worker (pmrun.Executor)
	StopWorker    Kind = "stop-worker"    // SIGSTOP of a task worker for 2 s, then SIGCONT
	KillAgent     Kind = "kill-agent"     // SIGKILL of a local agent (pmrun node)
	SlowLink      Kind = "slow-link"      // the harness's proxy delays a launcher-agent link
	KillContainer Kind = "kill-container" // docker kill of an agent container
	Disconnect    Kind = "disconnect"     // an agent container taken off its network
	FullShm       Kind = "full-shm"       // an agent container's /dev/shm filled up
)

// Where a run's ranks go.
const (
	Local  = "local"  // pmrun -np N (simulated nodes with --ppn sometimes)
	Agents = "agents" // two pmrun node agents on loopback, reached through proxies (-H)
	Docker = "docker" // pmrun --docker --nodes K
	Tasks  = "tasks"  // python3 tasks.py: a local pmrun.Executor map
)

// Run is one run of the campaign, all of it drawn from its seed.
type Run struct {
	Seed     int64
	Place    string        // Local, Agents, Docker or Tasks
	Workload string        // p2p, coll, shared, py (work.py) or tasks
	NP       int           // ranks (task workers for Tasks)
	Nodes    int           // nodes for Agents and Docker; simulated nodes (--ppn) for Local, 0 for none
	Rounds   int           // the workload's rounds (tasks for Tasks)
	Fault    Kind          // what strikes
	At       time.Duration // when, after the launch
	Target   int           // the rank, worker or node it strikes
	Delay    time.Duration // SlowLink: the delay added to every chunk
}

func (r Run) String() string {
	s := fmt.Sprintf("seed=%d %s %s np=%d", r.Seed, r.Place, r.Workload, r.NP)
	if r.Nodes > 0 {
		s += fmt.Sprintf(" nodes=%d", r.Nodes)
	}
	s += fmt.Sprintf(" rounds=%d %s", r.Rounds, r.Fault)
	if r.Fault != None {
		s += fmt.Sprintf(" at=%v target=%d", r.At.Round(time.Millisecond), r.Target)
	}
	if r.Fault == SlowLink {
		s += fmt.Sprintf(" delay=%v", r.Delay)
	}
	return s
}

// Plan draws the run of seed: docker says whether Docker runs may be drawn.
func Plan(seed int64, docker bool) Run {
	rng := rand.New(rand.NewSource(seed))
	r := Run{Seed: seed}
	switch p := rng.Intn(100); {
	case docker && p < 6:
		r.Place = Docker
	case p < 28:
		r.Place = Agents
	case p < 38:
		r.Place = Tasks
	default:
		r.Place = Local
	}
	pick := func(ks ...Kind) Kind { return ks[rng.Intn(len(ks))] }
	switch r.Place {
	case Tasks:
		r.Workload, r.NP, r.Rounds = "tasks", 2+rng.Intn(3), 60+rng.Intn(60)
		r.Fault = pick(None, KillWorker, KillWorker, StopWorker)
	case Agents:
		r.Nodes = 2
		r.Workload, r.NP = pick1(rng, "p2p", "coll", "py"), 2+rng.Intn(7)
		r.Fault = pick(None, KillRank, KillAgent, SlowLink, SlowLink, StopRank)
	case Docker:
		r.Nodes = 2 + rng.Intn(2)
		r.Workload, r.NP = pick1(rng, "p2p", "coll", "shared", "py"), r.Nodes+rng.Intn(5)
		r.Fault = pick(None, KillRank, KillContainer, KillContainer, Disconnect, Disconnect, FullShm, FullShm)
	default:
		r.Workload = pick1(rng, "p2p", "coll", "shared", "shared", "py")
		r.NP = 2 + rng.Intn(15)
		if r.Workload == "py" {
			r.NP = 2 + rng.Intn(7) // Python ranks start slowly on a small machine
		}
		if r.NP >= 4 && rng.Intn(4) == 0 {
			r.Nodes = 2
		}
		r.Fault = pick(None, KillRank, KillRank, KillRank, StopRank, StopRank)
	}
	if r.Workload != "tasks" {
		r.Rounds = rounds(r.Workload, r.NP, rng)
	}
	r.Target = rng.Intn(r.NP)
	if r.Place == Docker || r.Fault == KillAgent || r.Fault == SlowLink {
		r.Target = rng.Intn(r.Nodes)
	}
	r.At = time.Duration(200+rng.Intn(1300)) * time.Millisecond
	if r.Place == Docker {
		r.At = time.Duration(rng.Intn(2500)) * time.Millisecond // after the containers are up
	}
	if r.Fault == SlowLink {
		r.Delay = []time.Duration{20 * time.Millisecond, 200 * time.Millisecond, time.Second, 3 * time.Second}[rng.Intn(4)]
	}
	return r
}

func pick1(rng *rand.Rand, s ...string) string { return s[rng.Intn(len(s))] }

// rounds sizes a workload to last about one to two seconds here.
func rounds(workload string, np int, rng *rand.Rand) int {
	base := map[string]int{"p2p": 300, "coll": 150, "shared": 200, "py": 120}[workload]
	n := base * 4 / max(np, 4)
	return max(10, n/2+rng.Intn(n))
}
