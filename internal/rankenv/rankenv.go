// Package rankenv is the contract between a launcher and the ranks it
// starts: the environment variables that tell a process which rank of which
// job it is, where the job's rendezvous service listens, the secret its
// connections prove, and how many threads it may run.
//
// The launcher on this machine (node.RunLocal) and the node agents write it
// with Env.AppendTo; a rank reads it back with FromOS (comm.World does).
// The variable names and their values are an interface: the Python package
// and user programs read them too.
//
//	env := rankenv.Env{Rank: 1, Size: 4, Job: "j", Rendezvous: addr, Secret: secret, Threads: 2}
//	cmd.Env = env.AppendTo(os.Environ())
//	// in the rank:
//	e, err := rankenv.FromOS() // errors.Is(err, rankenv.ErrNotLaunched) without a launcher
package rankenv

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The variables of the contract.
const (
	Rank      = "PMRUN_RANK"       // world rank of this process
	Size      = "PMRUN_SIZE"       // number of ranks in the job
	LocalRank = "PMRUN_LOCAL_RANK" // rank among the job's ranks on this node
	LocalSize = "PMRUN_LOCAL_SIZE" // number of the job's ranks on this node
	// HostSize is the number of the job's ranks on this machine when it
	// differs from LocalSize: nodes simulated on one machine (pmrun --ppn).
	HostSize   = "PMRUN_HOST_SIZE"
	Job        = "PMRUN_JOB"        // job id
	Rendezvous = "PMRUN_RENDEZVOUS" // host:port of the launcher's rendezvous service
	Secret     = "PMRUN_SECRET"     // hex job secret that every connection proves
	Node       = "PMRUN_NODE"       // name of this node
	Threads    = "PMRUN_THREADS"    // threads this rank may run
	// GoMaxProcs is Go's own variable: a launcher sets it to Threads unless
	// the environment it extends sets it already.
	GoMaxProcs = "GOMAXPROCS"
)

// MinSecret is the shortest job secret a rank accepts, in bytes.
const MinSecret = 16

// ErrNotLaunched is FromEnviron's error when Rank is not set: the process
// was not started by a launcher (a singleton, as with `go run`).
var ErrNotLaunched = errors.New("rankenv: " + Rank + " is not set")

// Env is what a launcher tells one rank. Zero optional fields are left out
// of the environment.
type Env struct {
	Rank       int    // world rank, in [0, Size)
	Size       int    // ranks in the job, at least 1
	LocalRank  int    // rank among the job's ranks on its node (written when LocalSize > 0)
	LocalSize  int    // the job's ranks on its node (0: not written)
	HostSize   int    // the job's ranks on its machine, when nodes are simulated (0: not written)
	Node       string // name of its node ("": not written; a rank then takes its host name)
	Job        string // job id
	Rendezvous string // host:port of the launcher's rendezvous service
	Secret     []byte // job secret, at least MinSecret bytes
	Threads    int    // threads the rank may run (0: not written)
}

// Environ returns e as KEY=VALUE pairs, GOMAXPROCS included when Threads is
// set.
func (e Env) Environ() []string {
	kv := []string{
		Rank + "=" + strconv.Itoa(e.Rank),
		Size + "=" + strconv.Itoa(e.Size),
	}
	if e.LocalSize > 0 {
		kv = append(kv, LocalRank+"="+strconv.Itoa(e.LocalRank), LocalSize+"="+strconv.Itoa(e.LocalSize))
	}
	if e.HostSize > 0 {
		kv = append(kv, HostSize+"="+strconv.Itoa(e.HostSize))
	}
	if e.Node != "" {
		kv = append(kv, Node+"="+e.Node)
	}
	kv = append(kv, Job+"="+e.Job, Rendezvous+"="+e.Rendezvous, Secret+"="+hex.EncodeToString(e.Secret))
	if e.Threads > 0 {
		kv = append(kv, Threads+"="+strconv.Itoa(e.Threads), GoMaxProcs+"="+strconv.Itoa(e.Threads))
	}
	return kv
}

// AppendTo returns a new slice of base (KEY=VALUE pairs) followed by e's
// variables, which override base's, except GOMAXPROCS: base keeps its own
// when it sets one, so that a user's choice wins over the rank's share.
func (e Env) AppendTo(base []string) []string {
	keep := isSet(base, GoMaxProcs)
	env := base[:len(base):len(base)]
	for _, kv := range e.Environ() {
		if keep && strings.HasPrefix(kv, GoMaxProcs+"=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Lookup returns the value of name in env (KEY=VALUE pairs; the last one
// wins, as in a process's environment), or "".
func Lookup(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == name {
			return v
		}
	}
	return ""
}

// isSet reports whether env sets name, even to "".
func isSet(env []string, name string) bool {
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); ok && k == name {
			return true
		}
	}
	return false
}

// FromOS reads and validates this process's environment (see FromEnviron).
func FromOS() (Env, error) { return FromEnviron(os.Environ()) }

// FromEnviron reads and validates the contract from env (KEY=VALUE pairs).
// It returns ErrNotLaunched when Rank is not set; otherwise an error naming
// the first variable that is missing or bad.
func FromEnviron(env []string) (Env, error) {
	if Lookup(env, Rank) == "" {
		return Env{}, ErrNotLaunched
	}
	var e Env
	var err error
	if e.Rank, err = intVar(env, Rank, true); err != nil {
		return Env{}, err
	}
	if e.Size, err = intVar(env, Size, true); err != nil {
		return Env{}, err
	}
	if e.Size < 1 || e.Rank < 0 || e.Rank >= e.Size {
		return Env{}, fmt.Errorf("rankenv: %s=%d, %s=%d: rank out of range", Rank, e.Rank, Size, e.Size)
	}
	if e.LocalSize, err = intVar(env, LocalSize, false); err != nil {
		return Env{}, err
	}
	if e.LocalRank, err = intVar(env, LocalRank, false); err != nil {
		return Env{}, err
	}
	if e.LocalSize < 0 || e.LocalRank < 0 || e.LocalSize > 0 && e.LocalRank >= e.LocalSize {
		return Env{}, fmt.Errorf("rankenv: %s=%q, %s=%q: local rank out of range",
			LocalRank, Lookup(env, LocalRank), LocalSize, Lookup(env, LocalSize))
	}
	if e.HostSize, err = intVar(env, HostSize, false); err != nil {
		return Env{}, err
	}
	if e.Threads, err = intVar(env, Threads, false); err != nil {
		return Env{}, err
	}
	for _, v := range []struct {
		name string
		n    int
	}{{HostSize, e.HostSize}, {Threads, e.Threads}} {
		if v.n < 0 {
			return Env{}, fmt.Errorf("rankenv: %s=%d must not be negative", v.name, v.n)
		}
	}
	s := Lookup(env, Secret)
	if e.Secret, err = hex.DecodeString(s); err != nil || len(e.Secret) < MinSecret {
		return Env{}, fmt.Errorf("rankenv: %s must be at least %d hex-encoded bytes", Secret, MinSecret)
	}
	if e.Rendezvous = Lookup(env, Rendezvous); e.Rendezvous == "" {
		return Env{}, fmt.Errorf("rankenv: %s is not set", Rendezvous)
	}
	e.Job, e.Node = Lookup(env, Job), Lookup(env, Node)
	return e, nil
}

// intVar parses the integer variable name of env; an unset optional one is 0.
func intVar(env []string, name string, required bool) (int, error) {
	s := Lookup(env, name)
	if s == "" && !required {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("rankenv: %s=%q is not an integer", name, s)
	}
	return n, nil
}
