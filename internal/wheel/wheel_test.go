package wheel_test

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pmrun/pmrun/internal/e2e"
	"github.com/pmrun/pmrun/internal/wheel"
)

// TestWriteRecord: every file of a wheel is in its RECORD with the hash and
// size pip checks, and modes survive.
func TestWriteRecord(t *testing.T) {
	spec := wheel.Spec{Name: "demo", Version: "1.2", Tag: "py3-none-any", Purelib: true,
		Scripts: map[string]string{"demo": "demo:main"}}
	p, err := wheel.Write(t.TempDir(), spec, []wheel.File{
		{Name: "demo/__init__.py", Data: []byte("def main(): pass\n")},
		{Name: "demo/tool", Data: []byte("#!/bin/sh\n"), Mode: 0o755},
	})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(p) != "demo-1.2-py3-none-any.whl" {
		t.Errorf("file name %s", filepath.Base(p))
	}
	z, err := zip.OpenReader(p)
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	got := map[string]string{}
	var record string
	for _, f := range z.File {
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r)
		r.Close()
		if f.Name == "demo-1.2.dist-info/RECORD" {
			record = string(b)
			continue
		}
		sum := sha256.Sum256(b)
		got[f.Name] = fmt.Sprintf("%s,sha256=%s,%d", f.Name, base64.RawURLEncoding.EncodeToString(sum[:]), len(b))
		if f.Name == "demo/tool" && f.Mode().Perm() != 0o755 {
			t.Errorf("demo/tool mode %v, want 0755", f.Mode())
		}
	}
	lines := strings.Split(strings.TrimSpace(record), "\n")
	if len(lines) != len(got)+1 || lines[len(lines)-1] != "demo-1.2.dist-info/RECORD,," {
		t.Fatalf("RECORD:\n%s", record)
	}
	for _, l := range lines[:len(lines)-1] {
		name, _, _ := strings.Cut(l, ",")
		if got[name] != l {
			t.Errorf("RECORD line %q, file is %q", l, got[name])
		}
	}
	for _, want := range []string{"demo-1.2.dist-info/entry_points.txt", "demo-1.2.dist-info/WHEEL", "demo-1.2.dist-info/METADATA"} {
		if _, ok := got[want]; !ok {
			t.Errorf("no %s", want)
		}
	}
}

// TestInstall builds pmrun's wheel from the built tree, installs it offline
// into a fresh virtual environment, and runs a 4-rank job with the pmrun
// command it installed, with nothing else on PATH but the system's.
func TestInstall(t *testing.T) {
	e2e.NotShort(t, "installing the wheel into a virtual environment")
	pmrun := os.Getenv("PMRUN_BIN")
	e2e.Require(t, pmrun != "", "PMRUN_BIN is not set (make test sets it)")
	py, err := exec.LookPath("python3")
	e2e.Require(t, err == nil, "no python3")
	dir := t.TempDir()
	whl, err := wheel.Build(filepath.Dir(pmrun), versionOf(t, pmrun), filepath.Join(dir, "dist"))
	if err != nil {
		t.Fatal(err)
	}
	venv := filepath.Join(dir, "venv")
	if out, err := exec.Command(py, "-m", "venv", venv).CombinedOutput(); err != nil {
		e2e.Require(t, false, fmt.Sprintf("%s -m venv fails (%v): %s", py, err, out))
	}
	vbin := filepath.Join(venv, "bin")
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(vbin, name), args...)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=" + vbin + ":/usr/bin:/bin", "HOME=" + dir, "PIP_NO_INDEX=1",
			"PIP_DISABLE_PIP_VERSION_CHECK=1"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("pip", "install", "--no-index", whl)
	v := strings.TrimSpace(run("pmrun", "--version"))
	pv := strings.TrimSpace(run("python", "-c", "import pmrun; print(pmrun.__version__)"))
	if v != "pmrun "+pv {
		t.Errorf("pmrun --version says %q, pmrun.__version__ %q", v, pv)
	}
	script := filepath.Join(dir, "job.py")
	os.WriteFile(script, []byte("from mpi4py import MPI\nc = MPI.COMM_WORLD\nt = c.allreduce(c.rank)\nif c.rank == 0: print('total', t, 'of', c.size)\n"), 0o644)
	if out := run("pmrun", "-np", "4", "--timeout", "60", "job.py"); !strings.Contains(out, "total 6 of 4") {
		t.Errorf("job printed:\n%s", out)
	}
}

// versionOf is the launcher's version, which the wheel is named after.
func versionOf(t *testing.T, pmrun string) string {
	out, err := exec.Command(pmrun, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	v, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "pmrun ")
	if !ok || v == "" {
		t.Fatalf("pmrun --version printed %q", out)
	}
	return v
}
