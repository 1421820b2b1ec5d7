package e2e

import (
	"bufio"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// StartNode starts `pmrun node` (the launcher at pmrun) on loopback with the
// given name, a control port of the system's choosing, a work directory of
// the test's and the further options args, waits (at most 30 s) until it
// says its control address, and returns that address. The node is killed
// when the test ends.
func StartNode(t testing.TB, pmrun, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(pmrun, append([]string{"node", "--bind", "127.0.0.1:0", "--control-port", "0", "--name", name,
		"--work-dir", t.TempDir()}, args...)...)
	errs, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	sc := bufio.NewScanner(errs)
	for sc.Scan() {
		if _, addr, ok := strings.Cut(sc.Text(), ", control "); ok {
			go func() { // drains the node's stderr until it ends
				for sc.Scan() {
				}
			}()
			return addr
		}
	}
	t.Fatalf("node %s did not say its control address", name)
	return ""
}
