package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/pmrun/pmrun/internal/rendezvous"
)

// waitFor polls cond every 10 ms until it holds or d has passed.
func waitFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// holdRanks reads the pid files that "behave hold DIR" ranks write: their
// pids and job id, once both ranks have written theirs.
func holdRanks(t *testing.T, dir string) (pids []int, job string) {
	t.Helper()
	ok := waitFor(30*time.Second, func() bool {
		pids = pids[:0]
		for r := range 2 {
			b, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(r)+".pid"))
			f := strings.Fields(string(b))
			if err != nil || len(f) != 2 {
				return false
			}
			pid, _ := strconv.Atoi(f[0])
			pids, job = append(pids, pid), f[1]
		}
		return true
	})
	if !ok {
		t.Fatalf("the ranks did not start (no pid files in %s)", dir)
	}
	return pids, job
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// TestLauncherGoneEndsRanks: however the launcher ends (the terminal closing,
// SIGKILL, its stdout pipe closing as with "pmrun ... | head -1"),
// ranks blocked in a receive from each other end too, promptly, and leave
// nothing of their job in /dev/shm.
func TestLauncherGoneEndsRanks(t *testing.T) {
	for _, c := range []struct {
		name  string
		sig   syscall.Signal // sent to pmrun; 0: close its stdout after one line
		code  int            // pmrun's status (-1: killed)
		plain bool           // ranks that do not use comm (only the kernel can end them)
	}{
		{"SIGHUP", syscall.SIGHUP, 128 + int(syscall.SIGHUP), false},
		{"SIGKILL", syscall.SIGKILL, -1, false},
		{"SIGKILL plain ranks", syscall.SIGKILL, -1, true},
		{"head -1", 0, 128 + int(syscall.SIGPIPE), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"-np", "2", prog("behave"), "hold", dir}
			if c.sig == 0 {
				args = append(args, "chatty")
			}
			if c.plain {
				args = []string{"-np", "2", "sh", "-c", `echo "$$ $PMRUN_JOB" > "$0/$PMRUN_RANK.pid"; exec sleep 60`, dir}
			}
			cmd := exec.Command(bin.pmrun, args...)
			out, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			var stderr lockedBuffer
			cmd.Stdout, cmd.Stderr = w, &stderr
			err = cmd.Start()
			w.Close()
			if err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			go func() { cmd.Wait(); close(exited) }()
			defer func() {
				cmd.Process.Kill()
				<-exited
			}()
			pids, job := holdRanks(t, dir)
			defer func() {
				for _, pid := range pids {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}()
			if c.sig != 0 {
				go io.Copy(io.Discard, out) // ends when pmrun and its ranks are gone
				cmd.Process.Signal(c.sig)
			} else {
				line, err := bufio.NewReader(out).ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "rank ") {
					t.Fatalf("first line %q, %v", line, err)
				}
				out.Close() // as head does once it has its line
			}
			select {
			case <-exited:
			case <-time.After(20 * time.Second):
				t.Fatalf("pmrun still runs 20 s after %s", c.name)
			}
			if code := cmd.ProcessState.ExitCode(); code != c.code {
				t.Errorf("pmrun's status %d, want %d; stderr:\n%s", code, c.code, stderr.String())
			}
			for _, pid := range pids {
				if !waitFor(10*time.Second, func() bool { return !alive(pid) }) {
					t.Errorf("rank pid %d still runs 10 s after its launcher ended", pid)
				}
			}
			if c.sig == syscall.SIGKILL {
				// Nothing ran at the launcher's end: the next launcher on
				// this machine removes what the job left.
				if r := pmrun(t, "", "-np", "1", "true"); r.code != 0 {
					t.Fatalf("next job: status %d: %s", r.code, r.err)
				}
			}
			if left, _ := filepath.Glob("/dev/shm/pmrun-" + job + "-*"); len(left) > 0 {
				t.Errorf("left in /dev/shm: %v", left)
			}
		})
	}
}

// TestBinaryOutputUnchanged: output reaches pmrun's stdout byte for byte,
// binary or without a final newline.
func TestBinaryOutputUnchanged(t *testing.T) {
	data := make([]byte, 3<<20)
	rand.Read(data)
	file := filepath.Join(t.TempDir(), "random")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r := pmrun(t, "", "-np", "1", "cat", file)
	if r.code != 0 || r.out != string(data) {
		t.Errorf("status %d, %d bytes out of %d sent, equal: %v", r.code, len(r.out), len(data), r.out == string(data))
	}
}

// openPty returns a new pseudo-terminal's master and the path of its slave.
func openPty(t *testing.T) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal("no pseudo-terminals here: ", err)
	}
	var n uint32
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatal("TIOCGPTN:", e)
	}
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatal("TIOCSPTLCK:", e)
	}
	return m, fmt.Sprintf("/dev/pts/%d", n)
}

// TestTerminalInput: pmrun run from a terminal (its session's controlling
// terminal, as in an interactive shell) forwards what is typed to rank 0,
// which never reads the terminal itself; its prompt shows before the input
// is typed, and the end of input (Ctrl-D) reaches it as EOF.
func TestTerminalInput(t *testing.T) {
	m, slave := openPty(t)
	defer m.Close()
	s, err := os.OpenFile(slave, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin.pmrun, "-np", "2", "sh", "-c",
		`[ "$PMRUN_RANK" = 0 ] || exit 0; printf "name? "; read n; echo "hello $n"; cat; echo "end of input"`)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var screen lockedBuffer
	copied := make(chan struct{})
	go func() { io.Copy(&screen, m); close(copied) }() // ends when the terminal's last user is gone
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill() // if the test failed before pmrun ended
		<-exited
	}()
	expect := func(what string) {
		t.Helper()
		if !waitFor(20*time.Second, func() bool { return strings.Contains(screen.String(), what) }) {
			t.Fatalf("the terminal does not show %q:\n%q", what, screen.String())
		}
	}
	expect("name? ")
	m.WriteString("alice\n")
	expect("hello alice")
	m.WriteString("more\n\x04") // a line for cat, then Ctrl-D
	expect("end of input")
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("pmrun: %v; terminal:\n%q", waitErr, screen.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("pmrun did not end after the end of input:\n%q", screen.String())
	}
	m.Close()
	<-copied
}

// TestRankExitsWhenLauncherLost: a rank whose control connection to the
// launcher ends (here the launcher lives on, so only the rank's side acts)
// exits with a message instead of waiting forever in a receive.
func TestRankExitsWhenLauncherLost(t *testing.T) {
	secret := make([]byte, 32)
	rand.Read(secret)
	srv, err := rendezvous.Listen("127.0.0.1:0", secret, nil, 2, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dir := t.TempDir()
	type rank struct {
		cmd    *exec.Cmd
		stderr lockedBuffer
		done   chan struct{}
	}
	ranks := make([]*rank, 2)
	for r := range ranks {
		rk := &rank{cmd: exec.Command(prog("behave"), "hold", dir), done: make(chan struct{})}
		rk.cmd.Env = append(os.Environ(), "PMRUN_RANK="+strconv.Itoa(r), "PMRUN_SIZE=2", "PMRUN_JOB=losttest",
			"PMRUN_RENDEZVOUS="+srv.Addr(), "PMRUN_SECRET="+hex.EncodeToString(secret))
		rk.cmd.Stderr = &rk.stderr
		if err := rk.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { rk.cmd.Wait(); close(rk.done) }()
		defer func() {
			rk.cmd.Process.Kill()
			<-rk.done
		}()
		ranks[r] = rk
	}
	holdRanks(t, dir)
	srv.Close()
	told := 0 // the first to notice exits; its peer may see it go first
	for r, rk := range ranks {
		select {
		case <-rk.done:
			if strings.Contains(rk.stderr.String(), "launcher is gone") && rk.cmd.ProcessState.ExitCode() == 1 {
				told++
			}
		case <-time.After(20 * time.Second):
			t.Errorf("rank %d still runs 20 s after its launcher's connection closed", r)
		}
	}
	if told == 0 {
		t.Errorf("no rank said that the launcher is gone: %q, %q", ranks[0].stderr.String(), ranks[1].stderr.String())
	}
}
