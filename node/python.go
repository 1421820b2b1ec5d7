package node

import (
	"os"
	"path/filepath"
	"strings"
)

// PythonDir is where `make build` puts pmrun's Python package (and the
// mpi4py-compatible one, under compat/): next to the running executable, or in
// ../lib/pmrun/python for an installed layout. "" if there is none.
func PythonDir() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	dir := filepath.Dir(exe)
	for _, d := range []string{filepath.Join(dir, "python"), filepath.Join(dir, "..", "lib", "pmrun", "python")} {
		if _, err := os.Stat(filepath.Join(d, "pmrun", "libpmrun.so")); err == nil {
			return d
		}
	}
	return ""
}

// PythonEnv makes pmrun's Python package importable by every rank: it returns
// PYTHONPATH with its directory (and, unless noMPI4py, the mpi4py-compatible
// package) in front of the PYTHONPATH that env (KEY=VALUE pairs, the last
// one winning) or the process's environment has. Nil if there is no package.
func PythonEnv(env []string, noMPI4py bool) []string {
	dir := PythonDir()
	if dir == "" {
		return nil
	}
	path := []string{dir}
	if !noMPI4py {
		path = []string{filepath.Join(dir, "compat"), dir}
	}
	old := os.Getenv("PYTHONPATH")
	for _, kv := range env {
		if name, val, _ := strings.Cut(kv, "="); name == "PYTHONPATH" {
			old = val
		}
	}
	if old != "" {
		path = append(path, old)
	}
	return []string{"PYTHONPATH=" + strings.Join(path, string(os.PathListSeparator))}
}

// PythonArgs is the interpreter's command line that runs script with args as a
// rank: through pmrun's runner (python -m pmrun SCRIPT, as python -m mpi4py
// does) when the package is there, so that a failing rank exits at once with
// its own status, without finalizing with the others, and its traceback comes
// out tagged once.
func PythonArgs(script string, args []string) []string {
	if PythonDir() == "" {
		return append([]string{script}, args...)
	}
	return append([]string{"-m", "pmrun", script}, args...)
}
