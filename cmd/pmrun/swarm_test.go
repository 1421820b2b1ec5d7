package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pmrun/pmrun/internal/e2e"
	"github.com/pmrun/pmrun/internal/testwheel"
)

// swarmStack is the stack the Swarm test deploys docker/stack.yml as: its
// service is swarmStack_agent, its network swarmStack_net.
const swarmStack = "pmruntest"

// dockerCmd runs the docker command with a time limit and returns its combined
// output.
func dockerCmd(t *testing.T, limit time.Duration, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	c := exec.CommandContext(ctx, "docker", args...)
	c.Env = append(os.Environ(), env...)
	out, err := c.CombinedOutput()
	if err != nil {
		err = fmt.Errorf("docker %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), err
}

// advertiseAddr returns an IPv4 address of this host for `docker swarm init
// --advertise-addr`: the first on an interface that is up and is neither
// loopback nor one of Docker's bridges.
func advertiseAddr(t *testing.T) string {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 || i.Flags&net.FlagLoopback != 0 ||
			strings.HasPrefix(i.Name, "docker") || strings.HasPrefix(i.Name, "br-") || strings.HasPrefix(i.Name, "veth") {
			continue
		}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
				return n.IP.String()
			}
		}
	}
	e2e.Require(t, false, "no non-loopback IPv4 address for the swarm to advertise")
	return ""
}

// TestDockerSwarm puts the engine in a single-node swarm, deploys
// docker/stack.yml with 3 replicas, runs a job over all of them, scales to 5,
// runs a job over all 5 (a Python job with --requirements: each agent builds
// the virtual environment once and the next job reuses it), and leaves the
// swarm again, also when the test fails.
func TestDockerSwarm(t *testing.T) {
	needDocker(t)
	state, err := dockerCmd(t, 30*time.Second, nil, "info", "--format", "{{.Swarm.LocalNodeState}}")
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.TrimSpace(state); s != "inactive" {
		// Someone else's swarm: not ours to change, nor to leave.
		msg := "the Docker engine is already in a swarm (state " + s + "); the test only uses an engine it may put in a swarm and take out again"
		e2e.Require(t, false, msg)
	}
	root := filepath.Join(filepath.Dir(bin.pmrun), "..")
	suffix := fmt.Sprint(os.Getpid())
	image := "pmrun-swarmtest:" + suffix
	client := swarmStack + "-client-" + suffix
	network := swarmStack + "_net"
	keyb := make([]byte, 16)
	rand.Read(keyb)
	key := hex.EncodeToString(keyb)

	// The image: `pmrun image` builds the agents' image and names it.
	r := pmrun(t, "", "image", "--tag", image)
	if r.code != 0 || !strings.Contains(r.out, image) {
		t.Fatalf("pmrun image --tag %s: status %d\n%s%s", image, r.code, r.out, r.err)
	}
	t.Cleanup(func() { dockerCmd(t, time.Minute, nil, "image", "rm", image) })

	ip := advertiseAddr(t)
	// swarm init makes the bridge docker_gwbridge, which leaving keeps.
	gw, _ := dockerCmd(t, 30*time.Second, nil, "network", "ls", "-q", "--filter", "name=^docker_gwbridge$")
	hadGateway := strings.TrimSpace(gw) != ""
	start := time.Now()
	if _, err := dockerCmd(t, time.Minute, nil, "swarm", "init", "--advertise-addr", ip); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The client container holds the network; then the stack, whose
		// tasks must be gone before the swarm is left.
		dockerCmd(t, time.Minute, nil, "rm", "-f", client)
		dockerCmd(t, time.Minute, nil, "stack", "rm", swarmStack)
		filter := "label=com.docker.stack.namespace=" + swarmStack
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			ps, _ := dockerCmd(t, 30*time.Second, nil, "ps", "-aq", "--filter", filter)
			nets, _ := dockerCmd(t, 30*time.Second, nil, "network", "ls", "-q", "--filter", filter)
			if strings.TrimSpace(ps+nets) == "" {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if _, err := dockerCmd(t, time.Minute, nil, "swarm", "leave", "--force"); err != nil {
			t.Errorf("leaving the swarm: %v", err)
		}
		if !hadGateway {
			// The engine releases the bridge's last endpoint (the ingress
			// sandbox's) a moment after the swarm is left: until then the
			// removal fails with "has active endpoints".
			var err error
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
				_, err = dockerCmd(t, time.Minute, nil, "network", "rm", "docker_gwbridge")
				if err == nil || !strings.Contains(err.Error(), "active endpoints") || time.Now().After(deadline) {
					break
				}
			}
			switch {
			case err != nil && strings.Contains(err.Error(), "active endpoints"):
				// Some engines keep that endpoint until they restart: the
				// bridge is the engine's own, not the job's.
				t.Logf("the engine keeps the swarm's docker_gwbridge (a stale endpoint until it restarts): %v", err)
			case err != nil:
				t.Errorf("removing the swarm's docker_gwbridge: %v", err)
			}
		}
		ps, _ := dockerCmd(t, 30*time.Second, nil, "ps", "-aq", "--filter", filter)
		nets, _ := dockerCmd(t, 30*time.Second, nil, "network", "ls", "-q", "--filter", "name="+network)
		if l := strings.TrimSpace(ps + nets); l != "" {
			t.Errorf("left behind after the swarm test: %s", l)
		}
	})

	env := []string{"PMRUN_CLUSTER_KEY=" + key, "PMRUN_IMAGE=" + image}
	out, err := dockerCmd(t, 2*time.Minute, env, "stack", "deploy", "--detach=true", "--resolve-image", "never",
		"-c", filepath.Join(root, "docker", "stack.yml"), swarmStack)
	if err != nil {
		t.Fatalf("%v\n(an overlay network needs the kernel's vxlan module)", err)
	}
	t.Logf("docker stack deploy:\n%s", strings.TrimSpace(out))

	// A launcher next to the agents: a container on the stack's attachable
	// network, with the job's files mounted, which `docker exec` runs pmrun in.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "nodes.py"), []byte(`from mpi4py import MPI
import socket
c = MPI.COMM_WORLD
names = c.gather(socket.gethostname())
total = c.allreduce(c.rank + 1)
if c.rank == 0:
    print("swarm job: %d ranks on %d nodes, sum %d" % (c.size, len(set(names)), total))
`), 0o644)
	os.WriteFile(filepath.Join(dir, "tiny.py"), []byte(
		"import sys, pmruntiny\nprint('tiny', pmruntiny.VALUE, sys.prefix != sys.base_prefix)\n"), 0o644)
	if err := testwheel.Write(filepath.Join(dir, "files", "wheels")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "good.txt"), []byte("--no-index\n--find-links wheels\npmruntiny==1.0\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.txt"), []byte("--no-index\n--find-links wheels\nno-such-package-pmrun==9\n"), 0o644)
	if _, err := dockerCmd(t, time.Minute, nil, "run", "-d", "--name", client, "--network", network, "--init",
		"-e", "PMRUN_CLUSTER_KEY="+key, "-v", dir+":/job", "-w", "/job", "--entrypoint", "sleep", image, "600"); err != nil {
		t.Fatal(err)
	}
	inClient := func(limit time.Duration, args ...string) (string, error) {
		return dockerCmd(t, limit, nil, append([]string{"exec", "-e", "PMRUN_DEBUG=node", client, "pmrun"}, args...)...)
	}

	// waitAgents waits until the agents see n live members.
	waitAgents := func(n int) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		var last string
		for time.Now().Before(deadline) {
			out, err := dockerCmd(t, 20*time.Second, nil, "exec", client, "pmrun", "members", "--cluster", "agent", "--json")
			last = out
			var ms []struct{ Name, State string }
			if err == nil && json.Unmarshal([]byte(out), &ms) == nil {
				alive := 0
				for _, m := range ms {
					if m.State == "alive" {
						alive++
					}
				}
				if alive == n {
					t.Logf("%d agents alive %v after swarm init", n, time.Since(start).Round(100*time.Millisecond))
					return
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Fatalf("the agents did not reach %d live members in 90 s; last answer:\n%s", n, last)
	}
	// job runs nodes.py on 2 ranks per agent, one per core of a container
	// here, dealt round-robin so that every agent gets ranks.
	job := func(n int) {
		t.Helper()
		np := 2 * n
		out, err := inClient(2*time.Minute, "--cluster", "agent", "--map-by", "node", "-np", fmt.Sprint(np), "nodes.py")
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("swarm job: %d ranks on %d nodes, sum %d", np, n, np*(np+1)/2)
		if !strings.Contains(out, want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
		t.Logf("job over %d agents: %s", n, want)
	}

	waitAgents(3)
	members, _ := inClient(20*time.Second, "members", "--cluster", "agent")
	t.Logf("pmrun members:\n%s", strings.TrimSpace(members))
	job(3)
	// A launcher with the wrong key is refused, saying why.
	out, err = dockerCmd(t, 30*time.Second, nil, "exec", "-e", "PMRUN_CLUSTER_KEY=wrong", client,
		"pmrun", "--cluster", "agent", "-np", "2", "nodes.py")
	if err == nil || !strings.Contains(out, "cluster key") {
		t.Errorf("a job with the wrong key: err %v, want it refused naming the key:\n%s", err, out)
	}
	t.Logf("wrong key: %s", strings.TrimSpace(out))

	out, err = dockerCmd(t, 2*time.Minute, nil, "service", "scale", "--detach", swarmStack+"_agent=5")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("docker service scale: %s", strings.TrimSpace(out))
	waitAgents(5)
	job(5)

	// --requirements on every agent: built once, then reused.
	for _, want := range []string{"built", "reused"} {
		began := time.Now()
		out, err := inClient(3*time.Minute, "--cluster", "agent", "--map-by", "node", "-np", "5",
			"--files", "files", "--requirements", "good.txt", "tiny.py")
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(out, "tiny 42 True"); n != 5 {
			t.Fatalf("%d of 5 ranks imported the required package from a virtual environment:\n%s", n, out)
		}
		if n := strings.Count(out, "Python environment"); n != 5 || strings.Count(out, want) != 5 {
			t.Errorf("want all 5 agents' environments %s:\n%s", want, out)
		}
		t.Logf("--requirements job, environments %s, in %v", want, time.Since(began).Round(10*time.Millisecond))
	}
	out, err = inClient(3*time.Minute, "--cluster", "agent", "-np", "5",
		"--files", "files", "--requirements", "bad.txt", "tiny.py")
	if err == nil || !strings.Contains(out, "No matching distribution") || strings.Contains(out, "tiny 42") {
		t.Errorf("a requirement that cannot be installed: err %v, want pip's message and no rank started:\n%s", err, out)
	}

	// A killed agent is restarted by Swarm under its host name at a new
	// address, and is taken back within the failure-detection time, not
	// memberlist's 30 s memory of dead nodes.
	killed, oldGossip := killAgent(t, swarmStack+"_agent")
	began := time.Now()
	waitRestarted(t, client, killed, oldGossip, 25*time.Second)
	t.Logf("%s (was %s) alive again %v after docker kill", killed, oldGossip, time.Since(began).Round(100*time.Millisecond))
	// The README's job line, from a copy of the repository's example.
	pi, err := os.ReadFile(filepath.Join(root, "examples", "mpi", "pi.py"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "examples", "mpi"), 0o755)
	os.WriteFile(filepath.Join(dir, "examples", "mpi", "pi.py"), pi, 0o644)
	out, err = inClient(2*time.Minute, "--cluster", "agent", "-np", "10", "examples/mpi/pi.py")
	if err != nil || !strings.Contains(out, "from 2000000 darts on 10 ranks") {
		t.Errorf("README's job line: %v\n%s", err, out)
	}
}

// killAgent kills one task of service with docker kill and returns its host
// name (the node's name) and the gossip address it had.
func killAgent(t *testing.T, service string) (string, string) {
	t.Helper()
	out, err := dockerCmd(t, 30*time.Second, nil, "ps", "-q", "--filter", "label=com.docker.swarm.service.name="+service)
	ids := strings.Fields(out)
	if err != nil || len(ids) == 0 {
		t.Fatalf("no task of %s: %v", service, err)
	}
	name, err := dockerCmd(t, 30*time.Second, nil, "inspect", "--format", "{{.Config.Hostname}}", ids[0])
	if err != nil {
		t.Fatal(err)
	}
	ip, err := dockerCmd(t, 30*time.Second, nil, "exec", ids[0], "hostname", "-i")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dockerCmd(t, 30*time.Second, nil, "kill", ids[0]); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(name), net.JoinHostPort(strings.Fields(ip)[0], "7946")
}

// waitRestarted waits, at most limit, until every live agent lists name alive
// at a gossip address other than old.
func waitRestarted(t *testing.T, client, name, old string, limit time.Duration) {
	t.Helper()
	type member struct{ Name, State, Gossip, Control string }
	members := func(addr string) []member {
		out, err := dockerCmd(t, 20*time.Second, nil, "exec", client, "pmrun", "members", "--cluster", addr, "--json")
		var ms []member
		if err != nil || json.Unmarshal([]byte(out), &ms) != nil {
			return nil
		}
		return ms
	}
	back := func(ms []member) bool {
		for _, m := range ms {
			if m.Name == name {
				return m.State == "alive" && m.Gossip != old
			}
		}
		return false
	}
	deadline := time.Now().Add(limit)
	var last []member
	for time.Now().Before(deadline) {
		all := members("agent")
		ok := back(all)
		for _, m := range all {
			if ok && m.State == "alive" && m.Name != name {
				last = members(m.Control)
				ok = back(last)
			}
		}
		if ok {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("the restarted %s was not alive at a new address everywhere within %v; last view: %+v", name, limit, last)
}
