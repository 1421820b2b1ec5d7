package faults

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a process of a run, found by MarkerVar in its environment.
type proc struct {
	pid int
	env map[string]string
}

// procs lists the processes whose environment has MarkerVar=marker.
func procs(marker string) []proc {
	ents, _ := os.ReadDir("/proc")
	var ps []proc
	want := []byte(MarkerVar + "=" + marker + "\x00")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append(b, 0), want) {
			continue
		}
		env := map[string]string{}
		for _, kv := range bytes.Split(b, []byte{0}) {
			if k, v, ok := strings.Cut(string(kv), "="); ok {
				env[k] = v
			}
		}
		ps = append(ps, proc{pid: pid, env: env})
	}
	return ps
}

// watch records the job ids of the run's ranks until the launcher exits.
func (s *runState) watch() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		for _, p := range procs(s.marker) {
			if j := p.env["PMRUN_JOB"]; j != "" {
				s.mu.Lock()
				s.jobs[j] = true
				s.mu.Unlock()
			}
		}
		select {
		case <-s.exited:
			return
		case <-t.C:
		}
	}
}

// sleep waits d or until the launcher exits, reporting whether d passed.
func (s *runState) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.exited:
		return false
	}
}

// find waits for the run's processes with env key=val, at most until the
// launcher exits.
func (s *runState) find(key, val string) []int {
	for {
		var pids []int
		for _, p := range procs(s.marker) {
			if p.env[key] == val && (key == "PMRUN_WORKER" || p.env["PMRUN_WORKER"] == "") {
				pids = append(pids, p.pid)
			}
		}
		if len(pids) > 0 || !s.sleep(20*time.Millisecond) {
			return pids
		}
	}
}

// struck records that the fault strikes now, and what the exit must name.
func (s *runState) struck(culprit ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultAt, s.faultOK, s.culprit = time.Now(), true, culprit
}

// inject waits for the run's moment and strikes.
func (s *runState) inject(start time.Time) {
	r := s.r
	if r.Fault == None {
		return
	}
	if r.Place == Docker {
		if s.find("PMRUN_RANK", "0") == nil || !s.sleep(r.At) {
			return
		}
	} else if !s.sleep(time.Until(start.Add(r.At))) {
		return
	}
	switch r.Fault {
	case KillRank, StopRank:
		pids := s.find("PMRUN_RANK", strconv.Itoa(r.Target))
		if pids == nil {
			return
		}
		sig := syscall.SIGKILL
		if r.Fault == StopRank {
			sig = syscall.SIGSTOP
		}
		s.struck(fmt.Sprintf("rank %d", r.Target))
		signal(pids, sig)
		if r.Fault == StopRank { // held well past the timeout: a stalled launcher still sees it
			s.sleep(5 * time.Second)
			signal(pids, syscall.SIGCONT)
		}
	case KillWorker, StopWorker:
		pids := s.find("PMRUN_WORKER", strconv.Itoa(r.Target))
		if pids == nil {
			return
		}
		if r.Fault == KillWorker {
			s.struck("worker")
			signal(pids, syscall.SIGKILL)
			return
		}
		s.struck("worker")
		signal(pids, syscall.SIGSTOP)
		s.sleep(2 * time.Second)
		signal(pids, syscall.SIGCONT)
	case KillAgent:
		a := s.agents[r.Target]
		s.struck(a.name, a.proxy.Addr()) // the launcher knows it by the proxy's address
		a.cmd.Process.Signal(syscall.SIGKILL)
	case SlowLink:
		a := s.agents[r.Target]
		s.struck(a.name, a.proxy.Addr())
		a.proxy.SetDelay(r.Delay)
	case KillContainer, Disconnect, FullShm:
		s.strikeContainer()
	}
}

func signal(pids []int, sig syscall.Signal) {
	for _, pid := range pids {
		syscall.Kill(pid, sig)
	}
}

// launcherLabel is the label pmrun --docker puts on the containers and
// network of the launcher with pid.
func launcherLabel(pid int) string {
	host, _ := os.Hostname()
	return "pmrun.launcher=" + host + ":" + strconv.Itoa(pid)
}

// docker runs the docker command and returns its trimmed output.
func docker(args ...string) (string, error) {
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out)), nil
}

// strikeContainer kills, disconnects or fills the /dev/shm of the run's
// Target'th agent container (by name).
func (s *runState) strikeContainer() {
	out, err := docker("ps", "-q", "--filter", "label="+launcherLabel(s.cmd.Process.Pid))
	if err != nil || out == "" {
		return
	}
	ids := strings.Fields(out)
	type ctr struct{ id, name, host, net string }
	var cs []ctr
	for _, id := range ids {
		o, err := docker("inspect", "-f", `{{.Name}} {{.Config.Hostname}} {{index .Config.Labels "pmrun.job"}}`, id)
		f := strings.Fields(o)
		if err != nil || len(f) != 3 {
			continue
		}
		cs = append(cs, ctr{id: id, name: strings.TrimPrefix(f[0], "/"), host: f[1], net: "pmrun-" + f[2]})
	}
	if len(cs) == 0 {
		return
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	c := cs[s.r.Target%len(cs)]
	switch s.r.Fault {
	case KillContainer:
		s.struck(c.host, c.name)
		docker("kill", c.id)
	case Disconnect:
		s.struck(c.host, c.name)
		docker("network", "disconnect", "-f", c.net, c.id)
	case FullShm:
		s.struck(c.host, c.name, "/dev/shm", "shared memory")
		docker("exec", c.id, "sh", "-c", "dd if=/dev/zero of=/dev/shm/faults-fill bs=1M 2>/dev/null; true")
	}
}
