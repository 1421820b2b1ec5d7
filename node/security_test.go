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
	"syscall"
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
	if ms, err := QueryMembers(ctx, addr, "s3cret", nil); err != nil || len(ms) != 1 || ms[0].Name != "target" {
		t.Fatalf("the agent after the attacks: members %+v, %v", ms, err)
	}
	// A refusal is logged when the agent's handler of that connection gives
	// up, which for a hello cut short is its read deadline: on a loaded
	// machine that can come after the query above.
	refusals := func() (int, string) {
		mu.Lock()
		defer mu.Unlock()
		all := strings.Join(logged, "\n")
		return strings.Count(all, "refused a connection"), all
	}
	deadline := time.Now().Add(20 * time.Second)
	n, all := refusals()
	for ; n < 5 && time.Now().Before(deadline); n, all = refusals() {
		time.Sleep(50 * time.Millisecond)
	}
	if n < 5 {
		t.Errorf("%d refusals logged, want 5:\n%s", n, all)
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

// TestJobUsers runs two jobs at once on an agent with JobUsers: each runs as
// a uid of its own, in a directory only that uid may enter, and the second
// can neither read the first one's file, list the jobs, nor signal the
// first one's rank. The directories are removed and the uids released.
func TestJobUsers(t *testing.T) {
	if err := checkJobUsers(); err != nil {
		if os.Getenv("PMRUN_E2E") != "" {
			t.Skipf("job users need root, and this test runs as uid %d (CI runs it as root): %v", os.Geteuid(), err)
		}
		t.Skip(err)
	}
	work := filepath.Join(t.TempDir(), "work")
	if _, err := StartAgent(AgentConfig{Name: "n0", Bind: "127.0.0.1:0", WorkDir: work, JobUsers: true}); err == nil || !strings.Contains(err.Error(), "job users cannot reach their directories through it") {
		t.Fatalf("a work directory under a 0700 directory: %v", err)
	}
	for d := filepath.Dir(work); d != os.TempDir(); d = filepath.Dir(d) { // t.TempDir's directories are 0700
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	a, err := StartAgent(AgentConfig{Name: "n0", Bind: "127.0.0.1:0", Key: "k", WorkDir: work, JobUsers: true, Logf: testLogf(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	dir := t.TempDir()
	first := filepath.Join(dir, "first.sh")
	os.WriteFile(first, []byte("#!/bin/sh\necho \"uid=$(id -u) gid=$(id -g) home=$HOME\"\necho private > mine.txt\necho $$ > pid\nsleep 5\n"), 0o755)
	second := filepath.Join(dir, "second.sh")
	os.WriteFile(second, []byte(`#!/bin/sh
echo "uid=$(id -u)"
cat "$1/mine.txt" >/dev/null 2>&1 && echo READ || echo "read refused"
ls "$(dirname "$1")" >/dev/null 2>&1 && echo LISTED || echo "list refused"
kill -0 "$2" 2>/dev/null && echo SIGNALLED || echo "signal refused"
`), 0o755)
	spec := func(prog string, args ...string) ClusterSpec {
		return ClusterSpec{JobSpec: JobSpec{Program: prog, Args: args, NP: 1}, Hosts: []Host{{Addr: a.ControlAddr()}}, Key: "k", Ship: true}
	}
	var firstOut string
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, out, errs := runJob(t, spec(first))
		if res.ExitCode != 0 {
			t.Errorf("first job: status %d (%s), stderr:\n%s", res.ExitCode, res.Reason, errs)
		}
		firstOut = out
	}()
	// The test runs as root: it finds the first job's directory and pid.
	var jobDir, pid string
	deadline := time.Now().Add(30 * time.Second)
	for pid == "" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		ds, _ := os.ReadDir(filepath.Join(work, "jobs"))
		for _, d := range ds {
			if b, err := os.ReadFile(filepath.Join(work, "jobs", d.Name(), "pid")); err == nil && len(b) > 1 {
				jobDir, pid = filepath.Join(work, "jobs", d.Name()), strings.TrimSpace(string(b))
			}
		}
	}
	if pid == "" {
		t.Fatal("the first job did not start")
	}
	fi, err := os.Stat(jobDir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o700 || st.Uid < JobUserBase || st.Gid != st.Uid {
		t.Errorf("job directory: mode %v, owner %d:%d; want 0700 and a job user's", fi.Mode().Perm(), st.Uid, st.Gid)
	}
	res, out, errs := runJob(t, spec(second, jobDir, pid))
	if res.ExitCode != 0 || !strings.Contains(out, "read refused") || !strings.Contains(out, "list refused") || !strings.Contains(out, "signal refused") {
		t.Errorf("second job: status %d, out:\n%s\nstderr:\n%s", res.ExitCode, out, errs)
	}
	<-done
	uid1 := fmt.Sprint(st.Uid)
	if !strings.Contains(firstOut, "uid="+uid1+" gid="+uid1+" home="+jobDir) || strings.Contains(out, "uid="+uid1+"\n") || strings.Contains(out, "uid=0\n") {
		t.Errorf("uids: first job said %q, second %q (first's directory owned by %s)", firstOut, out, uid1)
	}
	a.Close()
	if _, err := os.Stat(jobDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("job directory %s after the job: %v, want it removed", jobDir, err)
	}
	for _, d := range []string{work, filepath.Join(work, "jobs")} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o711 {
			t.Errorf("%s: %v; want mode 0711 (reachable, not listable)", d, err)
		}
	}
}
