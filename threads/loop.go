package threads

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// loop is one For-family call in progress: the iterations [0, n) handed out
// in pieces by policy, and the first failure.
type loop struct {
	n      int
	parts  int // the pool's size: Static's blocks or lanes, Guided's divisor
	chunk  int // 0: the policy's default
	policy Policy
	body   func(lo, hi int) error
	cancel func() // cancels the context given to bodies, if any

	next atomic.Int64 // next iteration (Dynamic, Guided) or block or lane (Static)
	stop atomic.Bool  // set by the first failure or the caller's cancellation
	done <-chan struct{}

	once sync.Once
	err  error // the first failure; written once, read after the call
}

// newLoop prepares a loop of n iterations on o's pool; Auto becomes Guided.
func newLoop(ctx context.Context, n int, o *options) *loop {
	l := &loop{n: n, parts: o.pool.size, chunk: o.chunk, policy: o.policy, done: ctx.Done()}
	if l.policy == Auto {
		l.policy = Guided
	}
	return l
}

// fail records err as the call's result if it is the first, and stops the
// handing out of work.
func (l *loop) fail(err error) {
	l.once.Do(func() {
		l.err = err
		if l.cancel != nil {
			l.cancel()
		}
	})
	l.stop.Store(true)
}

// stopped reports whether no more work may start.
func (l *loop) stopped() bool {
	if l.stop.Load() {
		return true
	}
	if l.done != nil {
		select {
		case <-l.done:
			l.stop.Store(true)
			return true
		default:
		}
	}
	return false
}

// pieces estimates how many pieces the loop is handed out in, to decide how
// many workers to wake.
func (l *loop) pieces() int {
	c := max(l.chunk, 1)
	switch l.policy {
	case Static:
		if l.chunk == 0 {
			return min(l.parts, l.n)
		}
		return min(l.parts, (l.n+c-1)/c)
	case Guided:
		return min(l.parts, (l.n+c-1)/c)
	}
	return (l.n + c - 1) / c
}

// more reports whether there is work left to hand out.
func (l *loop) more() bool {
	if l.stop.Load() {
		return false
	}
	if l.policy == Static {
		return l.next.Load() < int64(l.parts)
	}
	return l.next.Load() < int64(l.n)
}

// help claims and runs pieces until there are none left or the loop stops. A
// panic in the body ends this goroutine's help and becomes the call's error,
// and so does a body's runtime.Goexit, which would otherwise lose its piece.
func (l *loop) help() {
	returned := false
	defer func() {
		if err := ended(recover(), returned); err != nil {
			l.fail(err)
		}
	}()
	if l.policy == Static {
		l.helpStatic()
	} else {
		l.helpClaimed()
	}
	returned = true
}

// helpClaimed runs Dynamic and Guided pieces.
func (l *loop) helpClaimed() {
	for !l.stopped() {
		lo, hi, ok := l.claim()
		if !ok {
			return
		}
		if err := l.body(lo, hi); err != nil {
			l.fail(err)
			return
		}
	}
}

// claim hands out the next Dynamic or Guided piece.
func (l *loop) claim() (lo, hi int, ok bool) {
	n, c := int64(l.n), int64(max(l.chunk, 1))
	if l.policy == Dynamic {
		lo := l.next.Add(c) - c
		if lo >= n {
			return 0, 0, false
		}
		return int(lo), int(min(lo+c, n)), true
	}
	for {
		lo := l.next.Load()
		if lo >= n {
			return 0, 0, false
		}
		hi := min(n, lo+max(c, (n-lo)/int64(2*l.parts)))
		if l.next.CompareAndSwap(lo, hi) {
			return int(lo), int(hi), true
		}
	}
}

// helpStatic takes blocks (or, with a chunk, lanes of chunks) by number.
func (l *loop) helpStatic() {
	parts := int64(l.parts)
	for {
		k := l.next.Add(1) - 1
		if k >= parts || l.stopped() {
			return
		}
		if l.chunk == 0 {
			lo, hi := int(k*int64(l.n)/parts), int((k+1)*int64(l.n)/parts)
			if lo < hi {
				if err := l.body(lo, hi); err != nil {
					l.fail(err)
					return
				}
			}
			continue
		}
		for lo := int(k) * l.chunk; lo < l.n; lo += l.parts * l.chunk {
			if l.stopped() {
				return
			}
			if err := l.body(lo, min(l.n, lo+l.chunk)); err != nil {
				l.fail(err)
				return
			}
		}
	}
}

// run runs l on pool p: the caller posts it for the workers, helps, and waits
// for the workers still inside; it returns the first failure, else the
// context's error if it was cancelled before the end.
func (l *loop) run(ctx context.Context, p *Pool) error {
	if err := p.usable(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("threads: %w", err)
	}
	if l.n == 0 {
		return nil
	}
	if l.done != nil {
		unhook := context.AfterFunc(ctx, func() { l.stop.Store(true) })
		defer unhook()
	}
	var j *job
	if wake := l.pieces() - 1; wake > 0 && p.size > 1 {
		j = &job{help: l.help, more: l.more}
		if err := p.post(j, wake); err != nil {
			return err
		}
	}
	l.help()
	if j != nil {
		p.finish(j)
	}
	if l.err != nil {
		return l.err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("threads: %w", err)
	}
	return nil
}
