package node

import (
	"os"
	"path/filepath"
	"strings"
)

// PythonLayout says where pmrun's Python package and the mpi4py-compatible
// one are.
type PythonLayout struct {
	Root    string // the directory that holds the package pmrun: on PYTHONPATH
	Package string // Root/pmrun, with libpmrun.so
	Compat  string // the directory that holds pmrun's mpi4py package
}

// FindPython finds pmrun's Python package from the running executable:
// python/ next to it (as `make build` lays it out), ../lib/pmrun/python for an
// installed layout, or, for a launcher installed by pip from pmrun's wheel
// (ROOT/pmrun/_bin/pmrun), the package around it, with the mpi4py package in
// ROOT/pmrun/_compat. ok is false if there is none.
func FindPython() (l PythonLayout, ok bool) {
	exe, err := os.Executable()
	if err != nil {
		return l, false
	}
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	return pythonNextTo(exe)
}

// pythonNextTo is FindPython for the launcher exe.
func pythonNextTo(exe string) (l PythonLayout, ok bool) {
	dir := filepath.Dir(exe)
	var candidates []PythonLayout
	for _, d := range []string{filepath.Join(dir, "python"), filepath.Join(dir, "..", "lib", "pmrun", "python")} {
		candidates = append(candidates, PythonLayout{Root: d, Package: filepath.Join(d, "pmrun"), Compat: filepath.Join(d, "compat")})
	}
	if pkg := filepath.Dir(dir); filepath.Base(dir) == "_bin" && filepath.Base(pkg) == "pmrun" {
		candidates = append(candidates, PythonLayout{Root: filepath.Dir(pkg), Package: pkg, Compat: filepath.Join(pkg, "_compat")})
	}
	for _, c := range candidates {
		if _, err := os.Stat(filepath.Join(c.Package, "libpmrun.so")); err == nil {
			return c, true
		}
	}
	return l, false
}

// PythonDir is the directory that holds pmrun's Python package, "" if there
// is none (see FindPython).
func PythonDir() string {
	l, _ := FindPython()
	return l.Root
}

// PythonEnv makes pmrun's Python package importable by every rank: it returns
// PYTHONPATH with its directory (and, unless noMPI4py, the mpi4py-compatible
// package) in front of the PYTHONPATH that env (KEY=VALUE pairs, the last
// one winning) or the process's environment has. Nil if there is no package.
func PythonEnv(env []string, noMPI4py bool) []string {
	l, ok := FindPython()
	if !ok {
		return nil
	}
	path := []string{l.Root}
	if !noMPI4py {
		path = []string{l.Compat, l.Root}
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
