package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pmrun/pmrun/internal/wire"
	"github.com/pmrun/pmrun/internal/wire/wiretest"
)

// TestControlPortRefusesStrangers attacks an agent's control port, and its
// gossip port, without the cluster key: garbage, a hello that proves
// nothing, the handshake with a wrong key and with none, and the replay of
// a handshake recorded from a launcher with the key. Each is refused and
// logged, and the agent goes on serving launchers with the key.
func TestControlPortRefusesStrangers(t *testing.T) {
	var mu sync.Mutex
	var logged []string
	a, err := StartAgent(AgentConfig{Name: "target", Bind: "127.0.0.1:0", Key: "s3cret", WorkDir: t.TempDir(),
		Logf: func(format string, args ...any) {
			mu.Lock()
			logged = append(logged, fmt.Sprintf(format, args...))
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	addr := a.ControlAddr()
	hello := append([]byte("PMRN\x01\x03\x00\x00\x00\x00"), make([]byte, 16)...)
	for name, got := range map[string]wiretest.Outcome{
		"garbage":    wiretest.Garbage(t, addr, []byte("\x00\x00\x00\x10{\"op\":\"members\"}")),
		"hello only": wiretest.Garbage(t, addr, append(hello, make([]byte, 32)...)),
		"wrong key":  wiretest.WrongKey(t, addr, controlSecret("other"), wire.RoleControl, 0),
		"no key":     wiretest.WrongKey(t, addr, controlSecret(""), wire.RoleControl, 0),
		"replay":     wiretest.Replay(t, addr, controlSecret("s3cret"), wire.RoleControl, 0),
	} {
		if got.Accepted {
			t.Errorf("%s: accepted", name)
		}
		if (name == "replay" || name == "hello only") && len(got.Answer) != 48 {
			t.Errorf("%s: answered %d bytes, want the 48 of the challenge (refused at the proof)", name, len(got.Answer))
		}
		if strings.HasSuffix(name, "key") && !errors.Is(got.Err, wire.ErrHandshake) {
			t.Errorf("%s: %v, want wire.ErrHandshake", name, got.Err)
		}
	}
	// Garbage on the gossip port (TCP and UDP): memberlist drops it.
	if c, err := net.Dial("tcp", a.GossipAddr()); err == nil {
		c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		c.Close()
	}
	if c, err := net.Dial("udp", a.GossipAddr()); err == nil {
		c.Write(bytes.Repeat([]byte{0xff}, 100))
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ms, err := QueryMembers(ctx, addr, "s3cret"); err != nil || len(ms) != 1 || ms[0].Name != "target" {
		t.Fatalf("the agent after the attacks: members %+v, %v", ms, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(strings.Join(logged, "\n"), "refused a connection"); n < 5 {
		t.Errorf("%d refusals logged, want 5:\n%s", n, strings.Join(logged, "\n"))
	}
}

// TestJobDirectory: a job's ranks run in a directory of their own under the
// agent's work directory, readable by the agent's user alone (0700 all the
// way), and it is removed when the job ends, failed or not.
func TestJobDirectory(t *testing.T) {
	work := filepath.Join(t.TempDir(), "work")
	a, err := StartAgent(AgentConfig{Name: "n0", Bind: "127.0.0.1:0", Key: "k", WorkDir: work, Logf: testLogf(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	script := filepath.Join(t.TempDir(), "job.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"dir=$(pwd)\"\necho private > mine.txt\nexit $CODE\n"), 0o755)
	var all []string
	for _, code := range []string{"0", "3"} {
		spec := ClusterSpec{JobSpec: JobSpec{Program: script, NP: 2, Env: []string{"CODE=" + code}},
			Hosts: []Host{{Addr: a.ControlAddr()}}, Key: "k", Ship: true}
		res, out, errs := runJob(t, spec)
		if fmt.Sprint(res.ExitCode) != code {
			t.Fatalf("status %d, want %s; stderr:\n%s", res.ExitCode, code, errs)
		}
		dirs := map[string]bool{}
		for line := range strings.Lines(out) {
			if d, ok := strings.CutPrefix(strings.TrimSpace(line), "dir="); ok {
				dirs[d] = true
			}
		}
		if len(dirs) != 1 {
			t.Fatalf("the ranks ran in %v, want one directory:\n%s", dirs, out)
		}
		for d := range dirs {
			if filepath.Dir(d) != filepath.Join(work, "jobs") {
				t.Errorf("job directory %s is not in %s", d, filepath.Join(work, "jobs"))
			}
			all = append(all, d)
		}
	}
	for _, d := range []string{work, filepath.Join(work, "jobs")} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v; want mode 0700", d, err)
		}
	}
	// The agent removes a job's directory once its ranks and their output
	// are done, which may be just after the launcher has its result; Close
	// waits for that.
	a.Close()
	for _, d := range all {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("job directory %s after the job: %v, want it removed", d, err)
		}
	}
}
