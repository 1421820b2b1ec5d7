package node

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/pmrun/pmrun/internal/rendezvous"
)

// supervisor is a running job's outcome and how to kill its ranks; local and
// cluster jobs share it and its event loop.
type supervisor struct {
	res  Result
	logf func(format string, args ...any)
	kill func(syscall.Signal)
}

// abort records the job's first failure and asks every rank to stop.
func (s *supervisor) abort(code, rank int, reason string) {
	if s.res.Reason != "" {
		return
	}
	s.res = Result{ExitCode: code, Reason: reason, Rank: rank}
	s.logf("pmrun: %s", reason)
	s.kill(syscall.SIGTERM)
}

// supervise runs the job's event loop until left units (ranks, or nodes) have
// finished: handle deals with the job's own events and reports whether one
// unit finished; Abort requests, the timeout, signals (a second one kills),
// cancellation and the kill grace period are handled here. Ranks that all
// exited 0 after a signal leave the job successful.
func supervise[E any](ctx context.Context, s *supervisor, spec JobSpec, aborts <-chan rendezvous.AbortRequest,
	left int, events <-chan E, handle func(E) bool) Result {
	s.res = Result{Rank: -1}
	var timeout <-chan time.Time
	if spec.Timeout > 0 {
		t := time.NewTimer(spec.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var grace <-chan time.Time
	signalled := 0
	for left > 0 {
		select {
		case ev := <-events:
			if handle(ev) {
				left--
			}
		case a := <-aborts:
			msg := fmt.Sprintf("rank %d called Abort with status %d", a.Rank, a.Code)
			if a.Msg != "" {
				msg += ": " + a.Msg
			}
			s.abort(a.Code, a.Rank, msg+"; aborting job")
		case <-timeout:
			s.abort(ExitTimeout, -1, fmt.Sprintf("job timed out after %v; aborting", spec.Timeout))
		case sig := <-spec.Signals:
			signalled++
			if signalled > 1 {
				s.kill(syscall.SIGKILL)
				continue
			}
			sn, _ := sig.(syscall.Signal)
			if s.res.Reason == "" {
				s.res = Result{ExitCode: 128 + int(sn), Reason: "interrupted by " + sig.String(), Rank: -1}
			}
			s.kill(sn)
		case <-ctx.Done():
			s.abort(ExitTimeout, -1, fmt.Sprintf("job cancelled: %v", ctx.Err()))
		case <-grace:
			s.kill(syscall.SIGKILL)
		}
		if s.res.Reason != "" && grace == nil {
			grace = time.After(KillGrace)
		}
	}
	if s.res.Reason != "" && s.res.ExitCode == 0 {
		s.res.Reason = ""
	}
	return s.res
}
