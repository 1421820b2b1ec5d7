package node

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/pmrun/pmrun/internal/insight"
	"github.com/pmrun/pmrun/internal/rendezvous"
)

// BlameWait is how long an Abort from a rank that had lost others waits for
// one of those to fail by itself (exit non-zero, or be killed), so that the
// job names that rank, the cause, and not the one that saw it go.
const BlameWait = time.Second

// supervisor is a running job's outcome and how to kill its ranks; local and
// cluster jobs share it and its event loop.
type supervisor struct {
	res  Result
	logf func(format string, args ...any)
	kill func(syscall.Signal)
	// losses returns the ranks that rank had reported lost (nil: none known).
	losses func(rank int) []int
	// query asks every rank what it is doing (nil: the ranks cannot be
	// asked); see rendezvous.Server.Query.
	query func(ctx context.Context) []json.RawMessage

	// consequences are the failures (Abort requests, or exits) of ranks
	// that had lost others, first come first; while no rank has failed by
	// itself, the first one waits (BlameWait) for one of the ranks it lost
	// to fail.
	consequences []consequence
	blameAt      <-chan time.Time // fires BlameWait after the first consequence
	interrupted  bool             // by a signal, which every rank got: no rank is to blame

	// verdict holds the lines that say how the job failed; report prints
	// them once the ranks' output is drained, so that they come after what
	// the failing rank wrote (its traceback) instead of racing it.
	verdict []string
}

// say records a line of the verdict.
func (s *supervisor) say(format string, args ...any) {
	s.verdict = append(s.verdict, fmt.Sprintf(format, args...))
}

// report prints the verdict; the caller has drained the ranks' output.
func (s *supervisor) report() {
	for _, l := range s.verdict {
		s.logf("%s", l)
	}
	s.verdict = nil
}

// consequence is the failure of a rank that had lost others.
type consequence struct {
	rank, code int
	reason     string
	lost       []int
}

// abort records the job's first failure and asks every rank to stop. The end
// of a rank that asked for an Abort because it lost others is not a failure
// of its own; nor, at first, is the failure of a rank that had reported
// others lost: it waits for one of those to fail by itself.
func (s *supervisor) abort(code, rank int, reason string) {
	if s.res.Reason != "" || s.consequenceOf(rank) != nil {
		return
	}
	if rank >= 0 && s.losses != nil {
		if lost := s.losses(rank); len(lost) > 0 {
			s.consequent(consequence{rank: rank, code: code, reason: reason, lost: lost})
			return
		}
	}
	s.fail(code, rank, reason)
}

// consequent records c and starts the wait for the cause.
func (s *supervisor) consequent(c consequence) {
	s.consequences = append(s.consequences, c)
	if s.res.Reason == "" && s.blameAt == nil {
		s.blameAt = time.After(BlameWait)
	}
}

func (s *supervisor) fail(code, rank int, reason string) {
	s.res = Result{ExitCode: code, Reason: reason, Rank: rank}
	s.say("pmrun: %s", reason)
	s.kill(syscall.SIGTERM)
}

// consequenceOf returns rank's consequence if it had lost other ranks.
func (s *supervisor) consequenceOf(rank int) *consequence {
	for i := range s.consequences {
		if s.consequences[i].rank == rank {
			return &s.consequences[i]
		}
	}
	return nil
}

// aborted handles a rank's Abort request.
func (s *supervisor) aborted(a rendezvous.AbortRequest) {
	if len(a.Lost) > 0 && !slices.Contains(a.Lost, a.Rank) {
		if s.consequenceOf(a.Rank) == nil {
			s.consequent(consequence{rank: a.Rank, code: a.Code, reason: abortReason(a), lost: a.Lost})
		}
		return
	}
	s.abort(a.Code, a.Rank, abortReason(a))
}

// blame makes the first consequence the job's failure when none of the ranks
// it lost failed by itself.
func (s *supervisor) blame() {
	if s.res.Reason == "" && len(s.consequences) > 0 {
		c := s.consequences[0]
		s.consequences = s.consequences[1:]
		s.fail(c.code, c.rank, c.reason)
	}
}

// summarise reports, in one line, the ranks that stopped because they lost
// others.
func (s *supervisor) summarise() {
	if len(s.consequences) == 0 || s.interrupted {
		return
	}
	var ranks, lost []int
	for _, c := range s.consequences {
		ranks = append(ranks, c.rank)
		lost = append(lost, c.lost...)
	}
	slices.Sort(ranks)
	slices.Sort(lost)
	lost = slices.DeleteFunc(slices.Compact(lost), func(r int) bool {
		return slices.Contains(ranks, r) // gone because of its own Abort
	})
	who, they := "rank "+rankList(ranks), "it"
	if len(ranks) > 1 {
		who, they = "ranks "+rankList(ranks), "they"
	}
	switch len(lost) {
	case 0:
		s.say("pmrun: %s stopped as a consequence", who)
	case 1:
		s.say("pmrun: %s stopped as a consequence: %s lost rank %d", who, they, lost[0])
	default:
		s.say("pmrun: %s stopped as a consequence: %s lost ranks %s", who, they, rankList(lost))
	}
}

func abortReason(a rendezvous.AbortRequest) string {
	msg := fmt.Sprintf("rank %d called Abort with status %d", a.Rank, a.Code)
	if a.Msg != "" {
		msg += ": " + a.Msg
	}
	return msg + "; aborting job"
}

// stallPoll is how often the ranks are asked what they do for a stall
// warning after d.
func stallPoll(d time.Duration) time.Duration {
	return min(max(d/4, 100*time.Millisecond), 5*time.Second)
}

// queries runs one question to the ranks at a time (supervisor.query) for
// the event loop, on a goroutine of its own.
type queries struct {
	ctx     context.Context
	query   func(ctx context.Context) []json.RawMessage
	wg      sync.WaitGroup
	busy    bool
	answers chan []json.RawMessage // one answer at a time
}

// start asks the ranks, unless a question is out already; it reports
// whether one is out now.
func (q *queries) start() bool {
	if q.query == nil {
		return false
	}
	if !q.busy {
		q.busy = true
		q.wg.Add(1)
		go func() {
			defer q.wg.Done()
			q.answers <- q.query(q.ctx)
		}()
	}
	return true
}

// tell prints what each rank is doing, under a header.
func (s *supervisor) tell(answers []json.RawMessage, format string, args ...any) {
	s.logf("pmrun: "+format, args...)
	for _, l := range insight.StateLines(answers) {
		s.logf("pmrun:   %s", l)
	}
}

// supervise runs the job's event loop until left units (ranks, or nodes) have
// finished: handle deals with the job's own events and reports whether one
// unit finished; Abort requests, the timeout, signals (a second one kills),
// cancellation and the kill grace period are handled here. Ranks that all
// exited 0 after a signal leave the job successful. SIGQUIT, the timeout and
// a stall (spec.StallWarn) make it print what every rank is blocked in; after
// the timeout's, the job is aborted.
func supervise[E any](ctx context.Context, s *supervisor, spec JobSpec, aborts <-chan rendezvous.AbortRequest,
	left int, events <-chan E, handle func(E) bool) Result {
	s.res = Result{Rank: -1}
	var timeout <-chan time.Time
	if spec.Timeout > 0 {
		t := time.NewTimer(spec.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	qctx, qcancel := context.WithCancel(ctx)
	q := &queries{ctx: qctx, query: s.query, answers: make(chan []json.RawMessage, 1)}
	defer q.wg.Wait()
	defer qcancel()
	var stallTick <-chan time.Time
	if spec.StallWarn > 0 && s.query != nil {
		t := time.NewTicker(stallPoll(spec.StallWarn))
		defer t.Stop()
		stallTick = t.C
	}
	var (
		timedOut bool                // the timeout expired: abort once the ranks have answered
		quitAsk  bool                // a SIGQUIT asked
		warned   = map[string]bool{} // the waits already told of as stalls
	)
	timeoutReason := fmt.Sprintf("job timed out after %v; aborting", spec.Timeout)
	var grace <-chan time.Time
	signalled := 0
	for left > 0 {
		select {
		case ev := <-events:
			// A rank's Abort request is queued before the rank exits: take
			// those queued first, so that its exit is known as the Abort's.
			for drained := false; !drained; {
				select {
				case a := <-aborts:
					s.aborted(a)
				default:
					drained = true
				}
			}
			if handle(ev) {
				left--
			}
		case a := <-aborts:
			s.aborted(a)
		case <-s.blameAt:
			s.blame()
		case <-timeout:
			if s.res.Reason == "" && q.start() {
				timedOut = true
				continue
			}
			s.abort(ExitTimeout, -1, timeoutReason)
		case <-stallTick:
			q.start()
		case answers := <-q.answers:
			q.busy = false
			stalled, longest := insight.Stalled(answers, spec.StallWarn)
			news := false
			for _, k := range stalled {
				news = news || !warned[k]
				warned[k] = true
			}
			switch {
			case timedOut:
				s.tell(answers, "job timed out after %v; what each rank was doing:", spec.Timeout)
				s.abort(ExitTimeout, -1, timeoutReason)
			case quitAsk:
				s.tell(answers, "SIGQUIT: what each rank is doing (the job goes on):")
			case spec.StallWarn > 0 && news: // a wait not told of before
				s.tell(answers, "no progress for %v (--stall-warn %v); what each rank is doing:", longest.Round(time.Millisecond), spec.StallWarn)
			}
			quitAsk = false
		case sig := <-spec.Signals:
			if sig == syscall.SIGQUIT && s.res.Reason == "" && q.start() {
				quitAsk = true
				continue
			}
			signalled++
			if signalled > 1 {
				s.kill(syscall.SIGKILL)
				continue
			}
			sn, _ := sig.(syscall.Signal)
			if s.res.Reason == "" {
				s.res = Result{ExitCode: 128 + int(sn), Reason: "interrupted by " + sig.String(), Rank: -1}
				s.interrupted = true
				s.logf("pmrun: %v: stopping the ranks (again to kill them)", sig)
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
	s.blame()
	s.summarise()
	if s.res.Reason != "" && s.res.ExitCode == 0 {
		s.res.Reason = ""
	}
	return s.res
}
