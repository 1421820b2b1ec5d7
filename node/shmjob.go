package node

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/pmrun/pmrun/internal/shm"
)

// A job's ranks leave files in /dev/shm when they die at a bad moment; the
// process that ran them removes them at the job's end (shm.RemoveJob).
// If that process is killed too, the next launcher or agent on the machine
// removes them: each job has an owner file, /dev/shm/pmrun-JOB-owner, locked
// (flock) by its launcher or agent for the job's life. The kernel drops the
// lock when that process dies, however it dies, so an unlocked owner file
// marks a job whose files nobody will remove.

const (
	shmDir      = shm.Dir
	ownerSuffix = "-owner"
)

// ownShared creates job's owner file and locks it; release removes the job's
// files in /dev/shm, the owner file last, and drops the lock. Without
// /dev/shm it does nothing.
func ownShared(job string) (release func()) {
	final := filepath.Join(shmDir, "pmrun-"+job+ownerSuffix)
	// Locked under a temporary name, then renamed, so that no other process
	// sees the owner file unlocked.
	f, err := os.CreateTemp(shmDir, ".pmrun-owner-")
	if err == nil {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			err = os.Rename(f.Name(), final)
		}
		if err != nil {
			os.Remove(f.Name())
			f.Close()
			f = nil
		}
	}
	return func() {
		shm.RemoveJob(job)
		if f != nil {
			os.Remove(final)
			f.Close()
		}
	}
}

// reapShared removes the /dev/shm files of jobs whose owner is gone.
func reapShared() {
	owners, _ := filepath.Glob(filepath.Join(shmDir, "pmrun-*"+ownerSuffix))
	for _, name := range owners {
		job := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(name), "pmrun-"), ownerSuffix)
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			shm.RemoveJob(job) // the owner file too
		}
		f.Close()
	}
}
