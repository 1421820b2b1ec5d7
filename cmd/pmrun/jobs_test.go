package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pmrun/pmrun/internal/e2e"

	"github.com/pmrun/pmrun/node"
)

// startNode starts a `pmrun node` on loopback for t and returns its control
// address; the node is stopped when t ends.
func startNode(t *testing.T, name string) string {
	return e2e.StartNode(t, bin.pmrun, name)
}

// startNodeArgs is startNode with more flags for the node.
func startNodeArgs(t *testing.T, name string, args ...string) string {
	return e2e.StartNode(t, bin.pmrun, name, args...)
}

// TestClusterFailureSaidOnce: a program a node cannot start, and an Abort
// with the same status, are reported once.
func TestClusterFailureSaidOnce(t *testing.T) {
	addr := startNode(t, "n0")
	r := pmrun(t, "", "-H", addr+":1", "-np", "1", "nonexistcmd")
	if r.code != 127 || strings.Count(r.err, "starting nonexistcmd") != 1 {
		t.Errorf("status %d, stderr:\n%s", r.code, r.err)
	}
	abort := script(t, "abort.py", "from mpi4py import MPI\nMPI.COMM_WORLD.Abort(127)\n")
	r = pmrun(t, "", "-H", addr+":1", "-np", "1", abort)
	if r.code != 127 || strings.Count(r.err, "called Abort with status 127") != 1 {
		t.Errorf("Abort(127): status %d, stderr:\n%s", r.code, r.err)
	}
}

// TestClusterOptionChecks: options that would be ignored are refused, naming
// the option.
func TestClusterOptionChecks(t *testing.T) {
	req := script(t, "req.txt", "numpy\n")
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"-H", "h", "--nodes", "3", "-np", "2", "true"}, "--nodes is the number of containers of --docker"},
		{[]string{"--nodes", "3", "-np", "2", "true"}, "--nodes is the number of containers of --docker"},
		{[]string{"-H", "h", "--requirements", req, "-np", "2", "./prog"}, "--requirements installs Python packages for a Python job (script.py or python ...); ./prog is not one"},
		{[]string{"-H", "127.0.0.1:27947", "-np", "2", "true"}, "-H 127.0.0.1:27947: read 27947 as slots (a port? write 127.0.0.1:27947:SLOTS)"},
		{[]string{"--hostfile", "/no/such/hostfile", "-np", "2", "true"}, "--hostfile: open /no/such/hostfile"},
	} {
		r := pmrun(t, "", tc.args...)
		if r.code != 2 || !strings.Contains(r.err, tc.says) {
			t.Errorf("pmrun %v: status %d, stderr:\n%s\nwant status 2 and %q", tc.args, r.code, r.err, tc.says)
		}
	}
}

// TestScriptDirShipped: a script that imports a module next to it runs on a
// node, its directory shipped with it and said so; a directory past the
// limits is not, and pmrun says to use --files.
func TestScriptDirShipped(t *testing.T) {
	addr := startNode(t, "n0")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "helper.py"), []byte("WORD = 'helped'\n"), 0o644)
	main := filepath.Join(dir, "main.py")
	os.WriteFile(main, []byte("import helper\nprint(helper.WORD)\n"), 0o644)
	r := pmrun(t, "", "-H", addr+":1", "-np", "1", main)
	if r.code != 0 || r.out != "helped\n" || strings.Count(r.err, "pmrun: shipping "+dir+" (2 files, 1 KiB) with the script; use --files to choose\n") != 1 {
		t.Errorf("status %d, out %q, stderr:\n%s", r.code, r.out, r.err)
	}
	os.WriteFile(filepath.Join(dir, "big.bin"), make([]byte, node.ScriptDirMaxBytes+1), 0o644)
	r = pmrun(t, "", "-H", addr+":1", "-np", "1", main)
	if r.code == 0 || !strings.Contains(r.err, "pmrun: not shipping "+dir+" with the script (more than 1000 files or 10 MiB); use --files DIR") {
		t.Errorf("a large directory: status %d, stderr:\n%s", r.code, r.err)
	}
}
