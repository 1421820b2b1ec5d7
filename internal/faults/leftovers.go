package faults

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// leftovers lists what the run left behind after its end (processes,
// containers, networks, /dev/shm files), giving each a moment to go, and
// then removes it so that the next run starts clean.
func (s *runState) leftovers() []string {
	var left []string
	deadline := time.Now().Add(3 * time.Second)
	settle := func(list func() []string) []string {
		for {
			l := list()
			if len(l) == 0 || time.Now().After(deadline) {
				return l
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	ps := settle(func() []string {
		var l []string
		for _, p := range procs(s.marker) {
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.pid))
			l = append(l, fmt.Sprintf("process %d (%s)", p.pid, strings.ReplaceAll(strings.TrimSpace(string(cmdline)), "\x00", " ")))
		}
		return l
	})
	left = append(left, ps...)
	for _, p := range procs(s.marker) {
		syscall.Kill(p.pid, syscall.SIGKILL)
	}
	if s.r.Place == Docker && s.cmd != nil && s.cmd.Process != nil {
		label := "label=" + launcherLabel(s.cmd.Process.Pid)
		ds := settle(func() []string {
			var l []string
			if out, _ := docker("ps", "-aq", "--filter", label); out != "" {
				for _, id := range strings.Fields(out) {
					l = append(l, "container "+id)
				}
			}
			if out, _ := docker("network", "ls", "-q", "--filter", label); out != "" {
				for _, id := range strings.Fields(out) {
					l = append(l, "network "+id)
				}
			}
			return l
		})
		left = append(left, ds...)
		for _, d := range ds {
			kind, id, _ := strings.Cut(d, " ")
			if kind == "container" {
				docker("rm", "-f", id)
			} else {
				docker("network", "rm", id)
			}
		}
	}
	s.mu.Lock()
	jobs := s.jobs
	s.mu.Unlock()
	fs := settle(func() []string {
		var l []string
		for j := range jobs {
			m, _ := filepath.Glob("/dev/shm/pmrun-" + j + "-*")
			for _, f := range m {
				l = append(l, "file "+f)
			}
		}
		return l
	})
	left = append(left, fs...)
	for _, f := range fs {
		os.Remove(strings.TrimPrefix(f, "file "))
	}
	return left
}
