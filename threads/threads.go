package threads

import (
	"context"
	"fmt"
)

// For calls body(i) for every i in [0, n) on the pool's goroutines and returns
// when all calls have returned. The first error (or panic, as a *PanicError)
// stops the loop: no call starts after it, and For returns it. Cancelling ctx
// stops the loop likewise (within 64 iterations per goroutine) and For returns
// ctx's error. The default schedule is Auto.
func For(ctx context.Context, n int, body func(i int) error, opts ...Option) error {
	o, err := collect(opts)
	if err != nil {
		return err
	}
	if n < 0 {
		return fmt.Errorf("threads: For over %d iterations", n)
	}
	return eachIndex(ctx, n, body, o).run(ctx, o.pool)
}

// checkEvery is how many iterations For runs between looks at ctx.Done();
// it looks at the loop's own stop flag before every iteration.
const checkEvery = 64

// eachIndex prepares For's loop: each piece calls body for its iterations.
func eachIndex(ctx context.Context, n int, body func(i int) error, o *options) *loop {
	l := newLoop(ctx, n, o)
	l.body = func(lo, hi int) error {
		for lo < hi {
			end := min(hi, lo+checkEvery)
			for i := lo; i < end; i++ {
				if l.stop.Load() {
					return nil
				}
				if err := body(i); err != nil {
					return err
				}
			}
			if lo = end; lo < hi && l.stopped() {
				return nil
			}
		}
		return nil
	}
	return l
}

// ForRange is For handing out ranges: body(lo, hi) runs iterations [lo, hi),
// hi-lo being at least Grain (except at the end). It suits cheap bodies,
// whose inner loop the compiler can optimise.
func ForRange(ctx context.Context, n int, body func(lo, hi int) error, opts ...Option) error {
	o, err := collect(opts)
	if err != nil {
		return err
	}
	if n < 0 {
		return fmt.Errorf("threads: ForRange over %d iterations", n)
	}
	l := newLoop(ctx, n, o)
	l.body = body
	return l.run(ctx, o.pool)
}

// Map returns out with out[i] = f(in[i]), computed on the pool like For. On
// error it returns nil and the first error.
func Map[T, R any](ctx context.Context, in []T, f func(x T) (R, error), opts ...Option) ([]R, error) {
	out := make([]R, len(in))
	err := For(ctx, len(in), func(i int) error {
		var err error
		out[i], err = f(in[i])
		return err
	}, opts...)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Reduce cuts [0, n) into chunks (the Schedule's chunk or Grain, else about
// four per goroutine), computes each chunk's partial result body(lo, hi, zero)
// on the pool, and combines the partials in chunk order with combine, starting
// from zero. The order is fixed, so for a given n, pool size and options the
// result is the same at every run, even for floating-point sums. Reduce
// ignores the schedule's policy: chunks go to whichever goroutine is free.
func Reduce[T any](ctx context.Context, n int, zero T, body func(lo, hi int, acc T) T, combine func(a, b T) T, opts ...Option) (T, error) {
	o, err := collect(opts)
	if err != nil {
		return zero, err
	}
	if n < 0 {
		return zero, fmt.Errorf("threads: Reduce over %d iterations", n)
	}
	c := o.chunk
	if c == 0 {
		c = max(1, (n+4*o.pool.size-1)/(4*o.pool.size))
	}
	partials := make([]T, (n+c-1)/c)
	l := newLoop(ctx, n, o)
	l.policy, l.chunk = Dynamic, c
	l.body = func(lo, hi int) error {
		partials[lo/c] = body(lo, hi, zero)
		return nil
	}
	if err := l.run(ctx, o.pool); err != nil {
		return zero, err
	}
	acc := zero
	for _, v := range partials {
		acc = combine(acc, v)
	}
	return acc, nil
}

// Join runs a and b at the same time on the pool (the caller runs one of them)
// and returns when both have returned. The first error (or panic) cancels the
// context the other one was given, and Join returns it.
func Join(ctx context.Context, a, b func(ctx context.Context) error, opts ...Option) error {
	o, err := collect(opts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fns := [2]func(context.Context) error{a, b}
	l := newLoop(ctx, 2, o)
	l.policy, l.chunk, l.cancel = Dynamic, 1, cancel
	l.body = func(lo, _ int) error { return fns[lo](ctx) }
	return l.run(ctx, o.pool)
}
