package threads

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
)

// Scope collects tasks started with Go during a call of Pool.Scope, which
// returns when all of them have returned. Go is safe for concurrent use, also
// from inside a task.
type Scope struct {
	p      *Pool
	ctx    context.Context
	cancel context.CancelFunc
	j      *job

	queue   []func(context.Context) error // tasks not yet started; guarded by p.mu
	ended   bool                          // Scope has returned; guarded by p.mu
	pending atomic.Int64                  // tasks queued or running
	kick    chan struct{}                 // poked when a task is queued or the last one ends

	once sync.Once
	err  error // the first failure
}

// Scope calls fn with a Scope on which fn (and the tasks themselves) start
// tasks with Go; the tasks run on the pool's goroutines, the caller's among
// them once fn has returned, at most Size() at a time. Scope returns when fn
// and every task have returned. The first error from fn or a task (or a
// panic, as a *PanicError) cancels the context the tasks are given, no task
// starts after it, and Scope returns it.
//
// Tasks run on a bounded number of goroutines, so a task must not wait for
// another task of the same pool to make progress (use plain goroutines for
// that, e.g. many ranks' worth of communication in flight at once).
func (p *Pool) Scope(ctx context.Context, fn func(s *Scope) error) error {
	if err := p.usable(); err != nil {
		return err
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &Scope{p: p, ctx: ctx, cancel: cancel, kick: make(chan struct{}, 1)}
	s.j = &job{help: s.help, more: func() bool { return len(s.queue) > 0 }}
	if err := s.call(fn); err != nil {
		s.fail(err)
	}
	for {
		s.help()
		if s.pending.Load() == 0 {
			break
		}
		<-s.kick
	}
	p.finish(s.j)
	p.mu.Lock()
	s.ended = true
	p.mu.Unlock()
	if s.err == nil && parent.Err() != nil {
		return fmt.Errorf("threads: %w", parent.Err())
	}
	return s.err
}

// Go starts f as a task of the scope; f's context is cancelled by the
// scope's first failure. After that failure f is not started at all. Go
// panics when called after Scope has returned.
func (s *Scope) Go(f func(ctx context.Context) error) {
	p := s.p
	p.mu.Lock()
	if s.ended {
		p.mu.Unlock()
		panic("threads: Scope.Go called after Scope returned")
	}
	s.pending.Add(1)
	s.queue = append(s.queue, f)
	if !s.j.listed && !p.closed {
		p.list(s.j, 1)
	}
	p.mu.Unlock()
	s.poke()
}

// call runs fn, turning a panic into a *PanicError.
func (s *Scope) call(fn func(*Scope) error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = ended(v, true)
		}
	}()
	return fn(s)
}

// help runs queued tasks until the queue is empty.
func (s *Scope) help() {
	for {
		s.p.mu.Lock()
		if len(s.queue) == 0 {
			s.p.mu.Unlock()
			return
		}
		f := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		s.p.mu.Unlock()
		s.run(f)
	}
}

// run runs one task unless the scope has failed, and wakes the caller when
// it was the last.
func (s *Scope) run(f func(context.Context) error) {
	defer func() {
		if s.pending.Add(-1) == 0 {
			s.poke()
		}
	}()
	if s.ctx.Err() != nil {
		return
	}
	returned := false
	defer func() {
		if err := ended(recover(), returned); err != nil {
			s.fail(err)
		}
	}()
	if err := f(s.ctx); err != nil {
		s.fail(err)
	}
	returned = true
}

// fail records err as the scope's result if it is the first and cancels the
// tasks' context.
func (s *Scope) fail(err error) {
	s.once.Do(func() {
		s.err = err
		s.cancel()
	})
}

// poke wakes the caller of Scope if it waits.
func (s *Scope) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}
