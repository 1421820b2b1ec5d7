package node

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

// Job users (AgentConfig.JobUsers, pmrun node --job-users): an agent that
// runs as root runs each job, and each task session, as a user of its own,
// so that a job cannot read, change or signal another job's files and
// processes. The users need no account: a numeric uid and gid from
// JobUserBase up, claimed for the job's life with a lock file that every
// agent of the machine shares (so two agents never hand out one uid at
// once), and released when the job ends. The job's directory is given to
// that user, mode 0700; the work directory and its jobs/ and venvs/ stay
// root's, mode 0711 (reachable, not listable).
const (
	// JobUserBase is the first uid and gid given to jobs; it is far above
	// the ranges of accounts and of user namespaces' subordinate ids.
	JobUserBase = 1_900_000_000
	// jobUserCount is how many are tried.
	jobUserCount = 65536
)

// jobUserLocks is where the uids' lock files are, shared by the agents of
// a machine.
func jobUserLocks() string { return filepath.Join(os.TempDir(), "pmrun-job-users") }

// jobUser is a uid and gid claimed for one job.
type jobUser struct {
	id   uint32
	lock *os.File
}

// claimJobUser claims the first free job uid.
func claimJobUser() (*jobUser, error) {
	dir := jobUserLocks()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("job users: %w", err)
	}
	for i := range jobUserCount {
		id := uint32(JobUserBase + i)
		f, err := os.OpenFile(filepath.Join(dir, strconv.FormatUint(uint64(id), 10)), os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("job users: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		return &jobUser{id: id, lock: f}, nil
	}
	return nil, fmt.Errorf("job users: all %d uids from %d are in use", jobUserCount, JobUserBase)
}

// release gives the uid back; u may be nil.
func (u *jobUser) release() {
	if u != nil {
		u.lock.Close()
	}
}

// own gives dir and everything in it to u, and makes dir 0700.
func (u *jobUser) own(dir string) error {
	if u == nil {
		return nil
	}
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(u.id), int(u.id))
	})
	if err == nil {
		err = os.Chmod(dir, 0o700)
	}
	if err != nil {
		return fmt.Errorf("job users: giving %s to uid %d: %w", dir, u.id, err)
	}
	return nil
}

// apply makes cmd run as u, with home dir (u may be nil: cmd is left as
// it is). The spawner keeps the credential when it sets its attributes.
func (u *jobUser) apply(cmd *exec.Cmd, home string) {
	if u == nil {
		return
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.id, Gid: u.id, Groups: []uint32{}}
	name := "pmrun-" + strconv.FormatUint(uint64(u.id), 10)
	cmd.Env = append(cmd.Env, "HOME="+home, "USER="+name, "LOGNAME="+name)
}

// checkJobUsers tells why an agent cannot have job users.
func checkJobUsers() error {
	if os.Geteuid() != 0 {
		return errors.New("node: --job-users needs the agent to run as root (it starts each job as a user of its own)")
	}
	return nil
}

// openWorkDir makes the work directory and its jobs/ and venvs/ reachable
// by job users (0711: they can reach their own job's directory and the
// Python environments, and list nothing).
func openWorkDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("node: work directory: %w", err)
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("node: work directory: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("node: --job-users: %s, above the work directory, has mode %v: job users cannot reach their directories through it; choose another --work-dir or chmod o+x it", p, fi.Mode().Perm())
		}
		if p == filepath.Dir(p) {
			break
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "jobs"), filepath.Join(dir, "venvs")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return fmt.Errorf("node: work directory: %w", err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return fmt.Errorf("node: work directory: %w", err)
		}
	}
	return nil
}
