package timerslack

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary, started by TestStartWith, print its
// threads' timer slacks instead of running the tests.
const helperEnv = "PMRUN_TIMERSLACK_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		// The main thread (its id the process's) ran the inits.
		var main string
		var others []string
		tasks, _ := filepath.Glob("/proc/self/task/*")
		for _, t := range tasks {
			b, _ := os.ReadFile("/proc/" + filepath.Base(t) + "/timerslack_ns")
			if filepath.Base(t) == strconv.Itoa(os.Getpid()) {
				main = strings.TrimSpace(string(b))
			} else {
				others = append(others, strings.TrimSpace(string(b)))
			}
		}
		os.Stdout.WriteString(main + " " + strings.Join(others, ","))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func slack(t *testing.T) int {
	t.Helper()
	v, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A program of this module starts with Sysmon's slack on the threads its
// runtime makes before the inits (the monitor's among them) and gets the
// launcher's back on the thread that runs them; the launcher's thread keeps
// its own.
func TestStartWith(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := slack(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if !Runs(self) {
		t.Fatalf("Runs(%s) = false for a test binary of this module", self)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), helperEnv+"=1", Env+"=7") // a stale one: StartWith's must win
	var out strings.Builder
	cmd.Stdout = &out
	if err := StartWith(cmd.Path, &cmd.Env, cmd.Start); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if got := slack(t); got != before {
		t.Errorf("the starting thread's slack is %d after StartWith, want %d", got, before)
	}
	main, others, _ := strings.Cut(out.String(), " ")
	if main != strconv.Itoa(before) {
		t.Errorf("the child's main thread has slack %s, want the launcher's %d", main, before)
	}
	if !slices.Contains(strings.Split(others, ","), strconv.FormatInt(Sysmon.Nanoseconds(), 10)) {
		t.Errorf("no thread of the child has slack %d (its monitor's): %s", Sysmon.Nanoseconds(), others)
	}
}

// Other programs start with the launcher's slack, and no Env.
func TestStartWithOthers(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh:", err)
	}
	if Runs(sh) {
		t.Fatalf("Runs(%s) = true", sh)
	}
	cmd := exec.Command(sh, "-c", "cat /proc/self/timerslack_ns; echo \"${"+Env+":-unset}\"")
	var out strings.Builder
	cmd.Stdout = &out
	if err := StartWith(cmd.Path, &cmd.Env, cmd.Run); err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(slack(t)) + "\nunset\n"; out.String() != want {
		t.Errorf("sh started with %q, want %q", out.String(), want)
	}
}

func TestRunsOthers(t *testing.T) {
	for _, p := range []string{"/usr/bin/python3", "/no/such/program", "/etc/passwd"} {
		if Runs(p) {
			t.Errorf("Runs(%s) = true", p)
		}
	}
}

func TestRestoreTo(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := slack(t)
	defer RestoreTo(strconv.Itoa(before))
	RestoreTo("123000")
	if got := slack(t); got != 123000 {
		t.Errorf("slack %d after RestoreTo(123000)", got)
	}
	for _, bad := range []string{"", "0", "-5", "1ms", "x"} {
		RestoreTo(bad)
		if got := slack(t); got != 123000 {
			t.Errorf("RestoreTo(%q) changed the slack to %d", bad, got)
		}
	}
}
