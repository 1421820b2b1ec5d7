package node

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// Python environments for jobs with requirements: one virtual environment per
// interpreter, requirements and local packages, made once per node under
// WORK_DIR/venvs and reused. Its key covers everything that determines it:
// the interpreter's resolved path and sys.version, the requirements' text,
// and the contents of the job's files that the requirements name (a wheel,
// a --find-links directory, a -r file), so that a rebuilt wheel of the same
// version or an upgraded interpreter gets a new environment.

// ExitSetup is the job's status when a node could not prepare it (its
// requirements could not be installed) before any rank started.
const ExitSetup = 123

// errSetup marks a failure to prepare a node's Python environment.
var errSetup = errors.New("installing the requirements failed")

// envProgress reports a step of an environment build ("creating the virtual
// environment", "installing the requirements") or, with detail, pip's
// progress within one ("collecting numpy").
type envProgress func(step string, detail bool)

// venvCache is a directory of Python environments, each named by its key:
// an agent's WORK_DIR/venvs, which its jobs and task workers share, or the
// user's cache for a task hub's local workers.
type venvCache struct {
	dir string
	mu  sync.Mutex // one Python environment is built at a time
}

// pythonEnv returns the environment for python and requirements, building it
// if needed (pip runs in the job's directory, so requirements may point
// --find-links at the job's files); cached reports a reuse. One build runs at
// a time on a node, and a lock file keeps agents that share WORK_DIR from
// building the same environment at once.
func (c *venvCache) pythonEnv(python, requirements, jobDir string, progress envProgress) (dir string, cached bool, err error) {
	key, err := envKey(python, requirements, jobDir)
	if err != nil {
		return "", false, err
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return "", false, err
	}
	dir = filepath.Join(c.dir, key)
	ready := filepath.Join(dir, ".pmrun-ready")
	c.mu.Lock()
	defer c.mu.Unlock()
	unlock, err := lockFile(dir + ".lock")
	if err != nil {
		return "", false, err
	}
	defer unlock()
	if _, err := os.Stat(ready); err == nil {
		return dir, true, nil
	}
	os.RemoveAll(dir)
	if err := buildEnv(python, requirements, jobDir, dir, progress); err != nil {
		os.RemoveAll(dir)
		return "", false, err
	}
	if err := os.WriteFile(ready, nil, 0o600); err != nil {
		return "", false, err
	}
	return dir, false, nil
}

// buildEnv makes the virtual environment dir and installs requirements in it.
func buildEnv(python, requirements, jobDir, dir string, progress envProgress) error {
	req := filepath.Join(jobDir, ".pmrun-requirements.txt")
	if err := os.WriteFile(req, []byte(requirements), 0o600); err != nil {
		return err
	}
	defer os.Remove(req) // jobDir may be a task hub's --files, the user's own
	progress("creating the virtual environment", false)
	if err := runStep(jobDir, nil, python, "-m", "venv", "--system-site-packages", dir); err != nil {
		return err
	}
	progress("installing the requirements", false)
	return runStep(jobDir, progress, filepath.Join(dir, "bin", "python"), "-m", "pip", "install",
		"--disable-pip-version-check", "--no-input", "--progress-bar", "off", "-r", req)
}

// runStep runs a command of an environment build in dir, passing pip's
// steps (see pipStep) to progress (if not nil); a failure returns errSetup
// with the command's last lines.
func runStep(dir string, progress envProgress, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	lines := make(chan []string, 1)
	go func() {
		var tail []string
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			if progress != nil {
				if pipStep(line) {
					progress(strings.ToLower(line[:1])+line[1:], true)
				}
			}
			if tail = append(tail, line); len(tail) > 20 {
				tail = tail[1:]
			}
		}
		io.Copy(io.Discard, pr)
		lines <- tail
	}()
	err := cmd.Run()
	pw.Close()
	tail := <-lines
	if err != nil {
		return fmt.Errorf("%w: %s %s: %v\n%s", errSetup, filepath.Base(name), strings.Join(args, " "), err,
			strings.Join(tail, "\n"))
	}
	return nil
}

// pipStep tells whether a line of pip's output starts a step: "Collecting X",
// "Processing ./wheels/x.whl", "Installing collected packages: x, y".
func pipStep(line string) bool {
	for _, p := range []string{"Collecting ", "Processing ", "Installing collected packages"} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

// lockFile takes an exclusive lock on path (created if need be) and returns
// its release.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// envKey returns the name of the environment of python and requirements for
// a job whose files are in jobDir (see the top of this file).
func envKey(python, requirements, jobDir string) (string, error) {
	path, err := exec.LookPath(python)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errSetup, err)
	}
	if p, err := filepath.EvalSymlinks(path); err == nil {
		path = p
	}
	version, err := exec.Command(path, "-c", "import sys; print(sys.version)").Output()
	if err != nil {
		return "", fmt.Errorf("%w: %s: %v", errSetup, path, err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00", path, version, requirements)
	for _, ref := range localRefs(requirements, jobDir) {
		if err := hashTree(h, jobDir, ref); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:12]), nil
}

// localRefs returns the job files (relative to jobDir, sorted) that the
// requirements name: any word of a line, or an option's value, that is the
// path of a file or directory in jobDir (with or without "file:").
func localRefs(requirements, jobDir string) []string {
	seen := map[string]bool{}
	for _, line := range strings.Split(requirements, "\n") {
		if i := strings.Index(line, "#"); i >= 0 && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t') {
			line = line[:i]
		}
		for _, w := range strings.Fields(line) {
			if _, v, ok := strings.Cut(w, "="); ok && strings.HasPrefix(w, "-") {
				w = v
			}
			w = strings.TrimPrefix(strings.TrimPrefix(w, "file://"), "file:")
			if w == "" || filepath.IsAbs(w) {
				continue
			}
			rel := filepath.Clean(w)
			if rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
				continue
			}
			if _, err := os.Lstat(filepath.Join(jobDir, rel)); err == nil {
				seen[rel] = true
			}
		}
	}
	refs := make([]string, 0, len(seen))
	for r := range seen {
		refs = append(refs, r)
	}
	sort.Strings(refs)
	return refs
}

// hashTree adds the names and contents of ref (a file or a directory tree in
// jobDir) to h; links add their target's name.
func hashTree(h hash.Hash, jobDir, ref string) error {
	return filepath.WalkDir(filepath.Join(jobDir, ref), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(jobDir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "L%s\x00%s\x00", rel, target)
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "F%s\x00%d\x00", rel, fi.Size())
			if _, err := io.Copy(h, f); err != nil {
				return err
			}
		}
		return nil
	})
}
