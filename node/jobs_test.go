package node

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pmrun/pmrun/internal/e2e"
	"github.com/pmrun/pmrun/internal/testwheel"
)

// venvPython is an interpreter that can make virtual environments, or the
// test is skipped (failed under PMRUN_E2E=1).
func venvPython(t *testing.T) string {
	t.Helper()
	py := "/usr/bin/python3"
	out, err := exec.Command(py, "-c", "import venv, ensurepip").CombinedOutput()
	e2e.Require(t, err == nil, fmt.Sprintf("%s cannot make virtual environments (install python3-venv): %v %s", py, err, out))
	return py
}

// TestRequirementsRebuiltWheel rebuilds a local wheel with the same version
// but other contents: the next job gets a new environment with the new code,
// and the one after reuses it. The build's steps reach the launcher's stderr,
// and pip's packages too when it is a terminal (the second job).
func TestRequirementsRebuiltWheel(t *testing.T) {
	py := venvPython(t)
	as := startAgents(t, 1, "")
	files := t.TempDir()
	script := filepath.Join(t.TempDir(), "use.py")
	os.WriteFile(script, []byte("import pmruntiny\nprint('tiny', pmruntiny.VALUE)\n"), 0o644)
	spec := ClusterSpec{JobSpec: JobSpec{Program: script, NP: 1}, Cluster: []string{as[0].ControlAddr()},
		Ship: true, Python: py, Files: files, Requirements: "--no-index\n--find-links wheels\npmruntiny==1.0\n"}
	t.Setenv("PMRUN_DEBUG", "node")
	for i, run := range []struct {
		value int
		how   string
	}{{42, "built"}, {43, "built"}, {43, "reused"}} {
		if err := testwheel.WriteValue(filepath.Join(files, "wheels"), run.value); err != nil {
			t.Fatal(err)
		}
		spec.Terminal = i == 1
		res, out, errs := runJob(t, spec)
		if res.ExitCode != 0 || out != fmt.Sprintf("tiny %d\n", run.value) {
			t.Fatalf("job %d: status %d (%s)\nout:\n%s\nerr:\n%s", i, res.ExitCode, res.Reason, out, errs)
		}
		if !strings.Contains(errs, "Python environment") || !strings.Contains(errs, run.how) {
			t.Errorf("job %d: want the environment %s:\n%s", i, run.how, errs)
		}
		if run.how == "built" {
			for _, step := range []string{"node n0: --requirements: creating the virtual environment (",
				"node n0: --requirements: installing the requirements (", "node n0: --requirements: done ("} {
				if strings.Count(errs, step) != 1 {
					t.Errorf("job %d: stderr lacks the step %q once:\n%s", i, step, errs)
				}
			}
			pkg := "node n0: --requirements: processing ./wheels/" + testwheel.Name + " ("
			if n := strings.Count(errs, pkg); n != btoi(spec.Terminal) {
				t.Errorf("job %d (terminal %v): pip's package line %d times:\n%s", i, spec.Terminal, n, errs)
			}
		} else if strings.Contains(errs, "creating the virtual environment") {
			t.Errorf("job %d: a reused environment was created again:\n%s", i, errs)
		}
	}

	// A requirement that cannot be installed: ExitSetup, pip's message once.
	bad := spec
	bad.Requirements = "--no-index\n--find-links wheels\nno-such-package-pmrun==9\n"
	res, out, errs := runJob(t, bad)
	if res.ExitCode != ExitSetup || strings.Count(res.Reason, "No matching distribution") != 1 ||
		strings.Count(errs, "No matching distribution") != 1 || out != "" {
		t.Errorf("bad requirement: status %d, reason %q, out %q, err %q", res.ExitCode, res.Reason, out, errs)
	}
}

// TestEnvKey: an environment's key changes with the interpreter's version,
// the requirements, and the contents of the job files they name, and with
// nothing else.
func TestEnvKey(t *testing.T) {
	bin, job := t.TempDir(), t.TempDir()
	py := filepath.Join(bin, "python3")
	version := func(v string) {
		if err := os.WriteFile(py, []byte("#!/bin/sh\necho '"+v+"'\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	version("3.11.2 (main)")
	os.MkdirAll(filepath.Join(job, "wheels"), 0o755)
	os.WriteFile(filepath.Join(job, "wheels", "a.whl"), []byte("one"), 0o644)
	os.WriteFile(filepath.Join(job, "other.txt"), []byte("not named"), 0o644)
	req := "--find-links=wheels\npkg==1.0 # a comment\n"
	key := func() string {
		t.Helper()
		k, err := envKey(py, req, job)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k0 := key()
	os.WriteFile(filepath.Join(job, "other.txt"), []byte("changed, not named"), 0o644)
	if key() != k0 {
		t.Error("a file the requirements do not name changed the key")
	}
	steps := []struct {
		what   string
		change func()
	}{
		{"a wheel's contents", func() { os.WriteFile(filepath.Join(job, "wheels", "a.whl"), []byte("two"), 0o644) }},
		{"the interpreter's version", func() { version("3.11.9 (main)") }},
		{"the requirements", func() { req += "other==2\n" }},
	}
	seen := map[string]string{k0: "the start"}
	for _, s := range steps {
		s.change()
		k := key()
		if prev, ok := seen[k]; ok {
			t.Errorf("after a change of %s the key is that of %s", s.what, prev)
		}
		seen[k] = s.what
	}
	if _, err := envKey(filepath.Join(bin, "nopython"), req, job); !errors.Is(err, errSetup) {
		t.Errorf("a missing interpreter: %v, want errSetup", err)
	}
}

// TestEnvBuiltOnce: two agents sharing a work directory asked for the same
// environment at once build it once; the other reuses it.
func TestEnvBuiltOnce(t *testing.T) {
	py := venvPython(t)
	work, job := t.TempDir(), t.TempDir()
	if err := testwheel.Write(filepath.Join(job, "wheels")); err != nil {
		t.Fatal(err)
	}
	req := "--no-index\n--find-links wheels\npmruntiny==1.0\n"
	var wg sync.WaitGroup
	cached := make([]bool, 2)
	errs := make([]error, 2)
	for i := range 2 {
		c := &venvCache{dir: filepath.Join(work, "venvs")} // each agent has its own
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, cached[i], errs[i] = c.pythonEnv(py, req, job, func(string, bool) {})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if cached[0] == cached[1] {
		t.Errorf("reused: %v, want one build and one reuse", cached)
	}
}

// TestFilesLinks ships a --files directory given as a link, with links inside
// it to a file and a directory of the tree: a rank reads through all of them.
// A link to outside the tree is refused, naming it.
func TestFilesLinks(t *testing.T) {
	as := startAgents(t, 1, "")
	tmp := t.TempDir()
	files := filepath.Join(tmp, "files")
	os.MkdirAll(filepath.Join(files, "data", "sub"), 0o755)
	os.WriteFile(filepath.Join(files, "data", "sub", "in.txt"), []byte("shipped"), 0o644)
	for link, to := range map[string]string{"alias.txt": "data/sub/in.txt", "d2": "data", "data/up": "../data/sub",
		"abs": filepath.Join(files, "data", "sub", "in.txt")} {
		if err := os.Symlink(to, filepath.Join(files, link)); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(tmp, "datalink")
	os.Symlink(files, root)
	script := filepath.Join(tmp, "read.sh")
	os.WriteFile(script, []byte("#!/bin/sh\ncat alias.txt d2/sub/in.txt data/up/in.txt abs\n"), 0o755)
	spec := ClusterSpec{JobSpec: JobSpec{Program: script, NP: 1}, Cluster: []string{as[0].ControlAddr()}, Ship: true, Files: root}
	res, out, errs := runJob(t, spec)
	if res.ExitCode != 0 || out != strings.Repeat("shipped", 4) {
		t.Fatalf("status %d (%s), out %q, err %q", res.ExitCode, res.Reason, out, errs)
	}

	outside := filepath.Join(tmp, "secret.txt")
	os.WriteFile(outside, []byte("x"), 0o644)
	os.Symlink(outside, filepath.Join(files, "data", "leak"))
	_, err := RunCluster(t.Context(), spec, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, ErrLinkOutside) || !strings.Contains(err.Error(), filepath.Join("data", "leak")+" -> "+outside) {
		t.Errorf("a link outside: %v", err)
	}
}

// TestExtractBundleLinks: an agent refuses links that leave the job directory
// and entries written through a link.
func TestExtractBundleLinks(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []tar.Header
		bad     string
	}{
		{"inside", []tar.Header{{Name: "d/", Typeflag: tar.TypeDir}, {Name: "d/l", Typeflag: tar.TypeSymlink, Linkname: "../x"}}, ""},
		{"up", []tar.Header{{Name: "d/l", Typeflag: tar.TypeSymlink, Linkname: "../../x"}}, "outside the job directory"},
		{"absolute", []tar.Header{{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc"}}, "outside the job directory"},
		{"through", []tar.Header{{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "d"}, {Name: "l/f", Typeflag: tar.TypeReg}}, "under the link"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			zw, _ := zstd.NewWriter(&b)
			tw := tar.NewWriter(zw)
			for _, h := range tc.entries {
				h.Mode = 0o644
				if err := tw.WriteHeader(&h); err != nil {
					t.Fatal(err)
				}
			}
			tw.Close()
			zw.Close()
			err := extractBundle(&b, t.TempDir(), DefaultMaxBundle)
			if (tc.bad == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("got %v, want %q", err, tc.bad)
			}
		})
	}
}

// TestScriptDirSize: what ships with a script leaves out hidden directories,
// __pycache__ and virtual environments, and stops past the limits.
func TestScriptDirSize(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, size int) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("main.py", 10)
	write("pkg/helper.py", 20)
	write(".git/objects/big", 20<<20)
	write("__pycache__/main.pyc", 5)
	write("venv/pyvenv.cfg", 5)
	write("venv/lib/x.py", 5)
	if n, size, err := ScriptDirSize(dir); err != nil || n != 2 || size != 30 {
		t.Errorf("got %d files, %d bytes, %v; want 2, 30", n, size, err)
	}
	var b bytes.Buffer
	if err := writeBundle(&b, "", "", dir, true); err != nil {
		t.Fatal(err)
	}
	got := t.TempDir()
	if err := extractBundle(&b, got, DefaultMaxBundle); err != nil {
		t.Fatal(err)
	}
	var shipped []string
	filepath.WalkDir(got, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(got, p)
			shipped = append(shipped, rel)
		}
		return err
	})
	if strings.Join(shipped, " ") != "main.py pkg/helper.py" {
		t.Errorf("shipped %v", shipped)
	}
	write("data.bin", ScriptDirMaxBytes)
	if _, _, err := ScriptDirSize(dir); !errors.Is(err, ErrScriptDirLarge) {
		t.Errorf("past the bytes limit: %v", err)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
