package main

import (
	"errors"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// jobSignals are the signals a job handles: Ctrl-C, kill and the terminal
// closing, which pmrun passes on to every rank, and Ctrl-\ (SIGQUIT), on
// which it prints what every rank is blocked in (see node.JobSpec.Signals).
// Those that pmrun was started with ignored (nohup ignores SIGHUP, a
// background job of a script SIGINT) stay ignored, here and in the ranks.
var jobSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

// notifyJobSignals relays jobSignals to sigs.
func notifyJobSignals(sigs chan<- os.Signal) {
	for _, s := range jobSignals {
		if !signal.Ignored(s) {
			signal.Notify(sigs, s)
		}
	}
}

// unsignalled returns a duplicate of f (pmrun's stdout or stderr). A Go
// program that writes to a closed pipe on descriptor 1 or 2 dies at once of
// SIGPIPE; on the duplicate the write fails with EPIPE instead, so that pmrun
// can end its ranks and exit with 141 as a shell user expects
// (pmrun ... | head -1), see brokenPipe.
func unsignalled(f *os.File) *os.File {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return f
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), f.Name())
}

// brokenPipe sends SIGPIPE to a job's signal channel, once, when a write to
// one of its writers fails because the pipe is closed: the job's output has
// nowhere to go, so the job ends as if pmrun had been killed by SIGPIPE.
type brokenPipe struct {
	once sync.Once
	sigs chan<- os.Signal
}

// writer wraps w.
func (b *brokenPipe) writer(w io.Writer) io.Writer { return &pipeWriter{w: w, b: b} }

type pipeWriter struct {
	w io.Writer
	b *brokenPipe
}

func (p *pipeWriter) Write(buf []byte) (int, error) {
	n, err := p.w.Write(buf)
	if errors.Is(err, syscall.EPIPE) {
		p.b.once.Do(func() {
			select {
			case p.b.sigs <- syscall.SIGPIPE:
			default: // signals are pending: the job is ending anyway
			}
		})
	}
	return n, err
}
