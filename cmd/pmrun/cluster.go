package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pmrun/pmrun/internal/tlsx"
	"github.com/pmrun/pmrun/internal/units"
	"github.com/pmrun/pmrun/node"
)

const nodeUsage = `usage: pmrun node [options]

Runs a node agent: it joins the cluster by gossip, advertises its cores and
runs the ranks of jobs that launchers (pmrun --cluster, -H) submit to it.

options:
  --bind HOST:PORT     gossip address (default 0.0.0.0:7946)
  --advertise HOST:PORT  the gossip address other nodes reach this one at
                       (default: chosen from --bind)
  --control-port PORT  port launchers connect to, on --bind's host (default 7947)
  --join ADDR[,ADDR]   nodes to join (host[:port]; DNS names such as
                       tasks.<service> are resolved again until one answers)
  --cluster-key KEY    encrypts gossip and authenticates launchers (default
                       $PMRUN_CLUSTER_KEY); without one only a loopback
                       --bind is allowed, unless --insecure
  --insecure           allow a non-loopback --bind without a key
  --tls-cert FILE      mutual TLS for control connections (both ways) and
  --tls-key FILE       for this node's ranks' links to other nodes: its
  --tls-ca FILE        certificate, key, and the CA every peer's must chain
                       to (default $PMRUN_TLS_CERT, $PMRUN_TLS_KEY,
                       $PMRUN_TLS_CA; all three or none)
  --name NAME          node name, unique in the cluster (default: the host
                       name, plus -PORT when --control-port is not 7947)
  --label KEY=VALUE    advertised with the node (repeatable)
  --cores N            slots offered to jobs (default: the number of CPUs)
  --workers N          Python task workers started for each task hub
                       (pmrun.Executor) that asks for no number (default:
                       --cores)
  --job-users          run each job and task session as a user of its own
                       (uid and gid from 1900000000, no account needed), its
                       directory that user's alone: jobs cannot read each
                       other's files or signal each other; needs root
  --work-dir DIR       where jobs' files and Python environments go (default
                       %s, NAME the node's name); jobs' files
                       left there are removed at start, environments kept
  --max-bundle SIZE    largest a job's program and files may unpack to, such
                       as 512m or 8g (default $PMRUN_MAX_BUNDLE, else 8g)
  --max-request SIZE   largest control message from a launcher: a job's
                       command line and environment (default
                       $PMRUN_MAX_REQUEST, else 1m)
  --max-meta SIZE      largest gossip metadata read from another node
                       (default 512, what memberlist lets a node advertise)
`

type labelList map[string]string

func (l labelList) String() string { return fmt.Sprint(map[string]string(l)) }

func (l labelList) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("label %q: want KEY=VALUE", v)
	}
	l[k] = val
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func runNode(args []string, stdout, stderr io.Writer) int {
	cfg := node.AgentConfig{Labels: labelList{}}
	var join string
	fs := flag.NewFlagSet("pmrun node", flag.ContinueOnError)
	fs.StringVar(&cfg.Bind, "bind", "0.0.0.0:7946", "")
	fs.StringVar(&cfg.Advertise, "advertise", "", "")
	fs.IntVar(&cfg.ControlPort, "control-port", node.DefaultControlPort, "")
	fs.StringVar(&join, "join", "", "")
	fs.StringVar(&cfg.Key, "cluster-key", os.Getenv(node.EnvClusterKey), "")
	var tf tlsFlags
	tf.register(fs)
	fs.BoolVar(&cfg.Insecure, "insecure", false, "")
	fs.StringVar(&cfg.Name, "name", "", "")
	fs.Var(labelList(cfg.Labels), "label", "")
	fs.IntVar(&cfg.Cores, "cores", 0, "")
	fs.IntVar(&cfg.Workers, "workers", 0, "")
	fs.StringVar(&cfg.WorkDir, "work-dir", "", "")
	fs.BoolVar(&cfg.JobUsers, "job-users", false, "")
	maxBundle := fs.String("max-bundle", os.Getenv("PMRUN_MAX_BUNDLE"), "")
	maxRequest := fs.String("max-request", os.Getenv("PMRUN_MAX_REQUEST"), "")
	maxMeta := fs.String("max-meta", "", "")
	usage := fmt.Sprintf(nodeUsage, node.DefaultWorkDir("NAME"))
	check := func() error {
		var err error
		if cfg.TLS, err = tf.load(); err != nil {
			return err
		}
		if cfg.Workers < 0 || cfg.Workers > node.MaxTaskWorkers {
			return fmt.Errorf("--workers %d: want 1 to %d", cfg.Workers, node.MaxTaskWorkers)
		}
		var bundle int
		for _, l := range []struct {
			flag, env, val string
			dst            *int
		}{
			{"--max-bundle", "PMRUN_MAX_BUNDLE", *maxBundle, &bundle},
			{"--max-request", "PMRUN_MAX_REQUEST", *maxRequest, &cfg.MaxRequest},
			{"--max-meta", "", *maxMeta, &cfg.MaxMeta},
		} {
			if l.val == "" {
				continue
			}
			n, err := units.ParseSize(l.val)
			if err == nil && n == 0 {
				err = errors.New("must be positive")
			}
			if err != nil {
				return fmt.Errorf("%s (or %s) %q: %w", l.flag, cmp.Or(l.env, "no variable"), l.val, err)
			}
			*l.dst = n
		}
		cfg.MaxBundle = int64(bundle)
		return nil
	}
	if code := parseSub(fs, args, usage, check, stdout, stderr); code >= 0 {
		return code
	}
	cfg.Join = splitList(join)
	a, err := node.StartAgent(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "pmrun %v\n", err) // err says "node: ..."
		return 1
	}
	fmt.Fprintf(stderr, "pmrun node %s: gossip %s, control %s\n", a.Name(), a.GossipAddr(), a.ControlAddr())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	joined := a.Joined()
	for {
		select {
		case <-joined:
			fmt.Fprintf(stderr, "pmrun node %s: joined the cluster (%d nodes)\n", a.Name(), len(a.Members()))
			joined = nil
		case err := <-a.Refused():
			a.Close()
			fmt.Fprintf(stderr, "pmrun node %s: %v\n", a.Name(), err)
			return 1
		case s := <-sigs:
			fmt.Fprintf(stderr, "pmrun node %s: %v: leaving the cluster\n", a.Name(), s)
			if err := a.Leave(); err != nil {
				fmt.Fprintf(stderr, "pmrun node %s: %v\n", a.Name(), err)
			}
			return 0
		}
	}
}

func runMembers(args []string, stdout, stderr io.Writer) int {
	var cluster, key string
	var asJSON bool
	fs := flag.NewFlagSet("pmrun members", flag.ContinueOnError)
	fs.StringVar(&cluster, "cluster", "", "")
	fs.StringVar(&key, "cluster-key", os.Getenv(node.EnvClusterKey), "")
	fs.BoolVar(&asJSON, "json", false, "")
	var tf tlsFlags
	tf.register(fs)
	var tc *tlsx.Config
	usage := "usage: pmrun members --cluster HOST[:PORT] [--cluster-key KEY] [--tls-cert FILE --tls-key FILE --tls-ca FILE] [--json]\n"
	required := func() error {
		if cluster == "" {
			return errors.New("--cluster is required")
		}
		var err error
		tc, err = tf.load()
		return err
	}
	if code := parseSub(fs, args, usage, required, stdout, stderr); code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ms []node.Member
	var err error
	for _, c := range splitList(cluster) {
		if ms, err = node.QueryMembers(ctx, c, key, tc); err == nil {
			break
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "pmrun members: %v\n", err)
		return 1
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(ms)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tCORES\tWORKERS\tBUSY\tIDLE\tCONTROL\tLABELS")
	for _, m := range ms {
		var ls []string
		for k, v := range m.Labels {
			ls = append(ls, k+"="+v)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", m.Name, m.State, m.Cores, m.Workers, m.Busy, m.Idle,
			m.Control, strings.Join(ls, ","))
	}
	tw.Flush()
	return 0
}

// maxSlots bounds the slots of one host: a larger number is taken for a port
// written where the slots go.
const maxSlots = 4096

// hostSyntax is the syntax of a host entry, for error messages.
const hostSyntax = "want host, host:slots, host:port:slots or [v6addr]:port:slots (slots may be empty or slots=N)"

// parseHosts parses -H: comma-separated host entries (see parseHost).
func parseHosts(s string) ([]node.Host, error) {
	var hs []node.Host
	for _, p := range splitList(s) {
		h, err := parseHost(p, false)
		if err != nil {
			return nil, fmt.Errorf("-H %s: %w", p, err)
		}
		hs = append(hs, h)
	}
	if len(hs) == 0 {
		return nil, fmt.Errorf("-H %q: no hosts", s)
	}
	return hs, nil
}

// parseHost parses a host entry: host (its cores), host:slots as mpirun's -H,
// host:port:slots, and IPv6 addresses in brackets ([::1], [::1]:4,
// [::1]:7947:4). Slots may be written slots=N, or left empty (host:port:) for
// the agent's cores. With noSlots (a hostfile line whose slots follow as
// slots=N) the entry is host or host:port.
func parseHost(s string, noSlots bool) (node.Host, error) {
	host, rest := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return node.Host{}, fmt.Errorf("unclosed [ (%s)", hostSyntax)
		}
		host, rest = s[1:end], s[end+1:]
		if rest != "" && !strings.HasPrefix(rest, ":") {
			return node.Host{}, fmt.Errorf("%q after ] (%s)", rest, hostSyntax)
		}
	} else if strings.Count(s, ":") > 2 {
		return node.Host{}, fmt.Errorf("too many fields (%s; an IPv6 address goes in brackets)", hostSyntax)
	} else if i := strings.Index(s, ":"); i >= 0 {
		host, rest = s[:i], s[i:]
	}
	if host == "" {
		return node.Host{}, fmt.Errorf("no host (%s)", hostSyntax)
	}
	var fields []string
	if rest != "" {
		fields = strings.Split(rest[1:], ":")
	}
	port, slots := "", ""
	switch {
	case len(fields) == 0:
	case noSlots && len(fields) == 1:
		port = fields[0]
	case len(fields) == 1:
		slots = fields[0]
	case len(fields) == 2 && !noSlots:
		port, slots = fields[0], fields[1]
	default:
		if noSlots {
			return node.Host{}, fmt.Errorf("want host[:port] before slots=N")
		}
		return node.Host{}, fmt.Errorf("too many fields (%s)", hostSyntax)
	}
	h := node.Host{Addr: host}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return node.Host{}, fmt.Errorf("read %q as the port, want 1-65535", port)
		}
		h.Addr = net.JoinHostPort(host, port)
	}
	if slots = strings.TrimPrefix(slots, "slots="); slots != "" {
		n, err := parseSlots(slots)
		if big, _ := strconv.Atoi(slots); err != nil && big > maxSlots && len(fields) == 1 {
			return node.Host{}, fmt.Errorf("read %s as slots (a port? write %s:SLOTS)", slots, s)
		}
		if err != nil {
			return node.Host{}, err
		}
		h.Slots = n
	}
	return h, nil
}

// parseSlots reads a number of slots, 1 to maxSlots.
func parseSlots(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxSlots {
		return 0, fmt.Errorf("read %q as slots, want 1-%d", s, maxSlots)
	}
	return n, nil
}

// parseHostfile reads a hostfile: one host entry per line, as -H takes them
// (host, host:slots, host:port:slots), or mpirun's "host[:port] slots=N"; #
// starts a comment, and mpirun's max_slots=N is accepted and ignored.
func parseHostfile(path string) ([]node.Host, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--hostfile: %w", err)
	}
	defer f.Close()
	var hs []node.Host
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		h, err := hostfileLine(fields)
		if err != nil {
			return nil, fmt.Errorf("--hostfile %s:%d: %s: %w", path, n, strings.TrimSpace(line), err)
		}
		hs = append(hs, h)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--hostfile: %w", err)
	}
	if len(hs) == 0 {
		return nil, fmt.Errorf("--hostfile %s: no hosts", path)
	}
	return hs, nil
}

// hostfileLine parses the fields of a hostfile line.
func hostfileLine(fields []string) (node.Host, error) {
	slots := ""
	for _, f := range fields[1:] {
		if _, ok := strings.CutPrefix(f, "max_slots="); ok {
			continue
		}
		v, ok := strings.CutPrefix(f, "slots=")
		if !ok {
			return node.Host{}, fmt.Errorf("unknown field %q (want slots=N)", f)
		}
		slots = v
	}
	if slots == "" {
		return parseHost(fields[0], false)
	}
	h, err := parseHost(fields[0], true)
	if err != nil {
		return node.Host{}, err
	}
	h.Slots, err = parseSlots(slots)
	return h, err
}

// runRemote runs the job on agents: a cluster, given hosts, or containers.
func runRemote(o *options, job node.JobSpec, stdout, stderr io.Writer) (node.Result, error) {
	spec := node.ClusterSpec{JobSpec: job, Cluster: splitList(o.cluster), Key: o.key, MapBy: o.mapBy,
		Files: o.files, NoMPI4py: o.noMPI4py, Hosts: o.hostList}
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		spec.Terminal = true // show pip's progress too
	}
	if o.script != "" {
		spec.Program, spec.Ship, spec.Python = o.script, true, o.program
		if o.files == "" {
			shipScriptDir(&spec, stderr)
		}
	} else if strings.Contains(o.program, "/") {
		spec.Ship = true
	}
	if o.requirements != "" {
		b, err := os.ReadFile(o.requirements)
		if err != nil {
			return node.Result{}, fmt.Errorf("--requirements: %w", err)
		}
		spec.Requirements = string(b)
	}
	if o.docker {
		return runDocker(o, spec, stdout, stderr)
	}
	return node.RunCluster(context.Background(), spec, stdout, stderr)
}

// shipScriptDir ships the script's directory with it when it is small (what
// it imports is likely there), saying so once; otherwise it says how to
// choose the files.
func shipScriptDir(spec *node.ClusterSpec, stderr io.Writer) {
	dir := filepath.Dir(spec.Program)
	n, size, err := node.ScriptDirSize(dir)
	switch {
	case errors.Is(err, node.ErrScriptDirLarge):
		fmt.Fprintf(stderr, "pmrun: not shipping %s with the script (%v); use --files DIR for what it imports\n", dir, err)
	case err != nil:
		fmt.Fprintf(stderr, "pmrun: not shipping %s with the script: %v; use --files DIR for what it imports\n", dir, err)
	case n > 1:
		spec.Files, spec.FilesOfPy = dir, true
		fmt.Fprintf(stderr, "pmrun: shipping %s (%d files, %d KiB) with the script; use --files to choose\n", dir, n, (size+1023)>>10)
	}
}
