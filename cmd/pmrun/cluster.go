package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

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
  --name NAME          node name, unique in the cluster (default: the host
                       name, plus -PORT when --control-port is not 7947)
  --label KEY=VALUE    advertised with the node (repeatable)
  --cores N            slots offered to jobs (default: the number of CPUs)
  --work-dir DIR       where jobs' files and Python environments go (default
                       %s, NAME the node's name); jobs' files
                       left there are removed at start, environments kept
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
	fs.BoolVar(&cfg.Insecure, "insecure", false, "")
	fs.StringVar(&cfg.Name, "name", "", "")
	fs.Var(labelList(cfg.Labels), "label", "")
	fs.IntVar(&cfg.Cores, "cores", 0, "")
	fs.StringVar(&cfg.WorkDir, "work-dir", "", "")
	usage := fmt.Sprintf(nodeUsage, node.DefaultWorkDir("NAME"))
	if code := parseSub(fs, args, usage, nil, stdout, stderr); code >= 0 {
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
	usage := "usage: pmrun members --cluster HOST[:PORT] [--cluster-key KEY] [--json]\n"
	required := func() error {
		if cluster == "" {
			return errors.New("--cluster is required")
		}
		return nil
	}
	if code := parseSub(fs, args, usage, required, stdout, stderr); code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ms []node.Member
	var err error
	for _, c := range splitList(cluster) {
		if ms, err = node.QueryMembers(ctx, c, key); err == nil {
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
	fmt.Fprintln(tw, "NAME\tSTATE\tCORES\tCONTROL\tLABELS")
	for _, m := range ms {
		var ls []string
		for k, v := range m.Labels {
			ls = append(ls, k+"="+v)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", m.Name, m.State, m.Cores, m.Control, strings.Join(ls, ","))
	}
	tw.Flush()
	return 0
}

// parseHosts parses -H: host, host:slots or host:port:slots, comma-separated.
func parseHosts(s string) ([]node.Host, error) {
	var hs []node.Host
	for _, p := range splitList(s) {
		parts := strings.Split(p, ":")
		h := node.Host{Addr: parts[0]}
		var err error
		switch len(parts) {
		case 1:
		case 2:
			h.Slots, err = strconv.Atoi(parts[1])
		case 3:
			h.Addr = parts[0] + ":" + parts[1]
			h.Slots, err = strconv.Atoi(parts[2])
		default:
			err = errors.New("want host, host:slots or host:port:slots")
		}
		if err != nil || h.Addr == "" || h.Slots < 0 {
			return nil, fmt.Errorf("-H %q: want host, host:slots or host:port:slots", p)
		}
		hs = append(hs, h)
	}
	return hs, nil
}

// parseHostfile reads lines "host[:port] [slots=N]"; # starts a comment.
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
		h := node.Host{Addr: fields[0]}
		for _, f := range fields[1:] {
			v, ok := strings.CutPrefix(f, "slots=")
			if !ok {
				return nil, fmt.Errorf("--hostfile %s:%d: unknown field %q (want slots=N)", path, n, f)
			}
			if h.Slots, err = strconv.Atoi(v); err != nil || h.Slots < 1 {
				return nil, fmt.Errorf("--hostfile %s:%d: bad slots %q", path, n, v)
			}
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

// runRemote runs the job on agents: a cluster, given hosts, or containers.
func runRemote(o *options, job node.JobSpec, stdout, stderr io.Writer) (node.Result, error) {
	spec := node.ClusterSpec{JobSpec: job, Cluster: splitList(o.cluster), Key: o.key, MapBy: o.mapBy,
		Files: o.files, NoMPI4py: o.noMPI4py}
	var err error
	switch {
	case o.hosts != "":
		spec.Hosts, err = parseHosts(o.hosts)
	case o.hostfile != "":
		spec.Hosts, err = parseHostfile(o.hostfile)
	}
	if err != nil {
		return node.Result{}, err
	}
	if o.script != "" {
		spec.Program, spec.Ship, spec.Python = o.script, true, o.program
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
