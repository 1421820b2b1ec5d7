package threads

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Default().Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "threads: leaked goroutines:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// newPool returns a pool of n closed at the end of the test.
func newPool(t testing.TB, n int) *Pool {
	t.Helper()
	p := New(n)
	t.Cleanup(func() { p.Close() })
	return p
}

// uneven burns time growing with i, so that the pieces of a loop take
// different times.
func uneven(i int) int {
	s := 0
	for k := range i % 37 {
		s += k
	}
	return s
}

// scheduleCases lists every policy, with its default chunk and with a chunk of 3.
func scheduleCases() []Option {
	var cases []Option
	for _, pol := range []Policy{Auto, Static, Dynamic, Guided} {
		for _, c := range []int{0, 3} {
			cases = append(cases, Schedule(pol, c))
		}
	}
	return cases
}

// checkOnce fails t unless every counter is exactly 1.
func checkOnce(t *testing.T, counts []atomic.Int32) {
	t.Helper()
	for i := range counts {
		if c := counts[i].Load(); c != 1 {
			t.Fatalf("iteration %d ran %d times", i, c)
		}
	}
}

func TestEveryIterationOnce(t *testing.T) {
	ctx := context.Background()
	for size := 1; size <= 4; size++ {
		p := newPool(t, size)
		for _, sched := range scheduleCases() {
			o := &options{}
			sched(o)
			for _, n := range []int{0, 1, 7, 1000, 100003} {
				t.Run(fmt.Sprintf("size=%d/%v,%d/n=%d", size, o.policy, o.chunk, n), func(t *testing.T) {
					counts := make([]atomic.Int32, n)
					sink := atomic.Int64{}
					err := For(ctx, n, func(i int) error {
						sink.Add(int64(uneven(i)))
						counts[i].Add(1)
						return nil
					}, sched, OnPool(p))
					if err != nil {
						t.Fatal(err)
					}
					checkOnce(t, counts)
					counts = make([]atomic.Int32, n)
					err = ForRange(ctx, n, func(lo, hi int) error {
						if lo >= hi {
							return fmt.Errorf("empty range [%d, %d)", lo, hi)
						}
						for i := lo; i < hi; i++ {
							sink.Add(int64(uneven(i)))
							counts[i].Add(1)
						}
						return nil
					}, sched, Grain(2), OnPool(p))
					if err != nil {
						t.Fatal(err)
					}
					checkOnce(t, counts)
				})
			}
		}
	}
}

func TestGrainIsTheSmallestRange(t *testing.T) {
	p := newPool(t, 3)
	for _, sched := range scheduleCases() {
		var short atomic.Int32
		const n, grain = 1000, 16
		err := ForRange(context.Background(), n, func(lo, hi int) error {
			if hi-lo < grain && hi != n {
				short.Add(1)
			}
			return nil
		}, sched, Grain(grain), OnPool(p))
		if err != nil {
			t.Fatal(err)
		}
		if short.Load() != 0 {
			t.Errorf("%d ranges shorter than the grain %d", short.Load(), grain)
		}
	}
}

func TestNestedThreeLevels(t *testing.T) {
	ctx := context.Background()
	for size := 1; size <= 4; size++ {
		t.Run(fmt.Sprintf("size=%d", size), func(t *testing.T) {
			p := newPool(t, size)
			var mu sync.Mutex // guards seen
			seen := map[[3]int]int{}
			const a, b, c = 5, 6, 7
			err := For(ctx, a, func(i int) error {
				return For(ctx, b, func(j int) error {
					return ForRange(ctx, c, func(lo, hi int) error {
						for k := lo; k < hi; k++ {
							mu.Lock()
							seen[[3]int{i, j, k}]++
							mu.Unlock()
						}
						return nil
					}, OnPool(p))
				}, Schedule(Dynamic, 1), OnPool(p))
			}, Schedule(Static, 0), OnPool(p))
			if err != nil {
				t.Fatal(err)
			}
			if len(seen) != a*b*c {
				t.Fatalf("%d distinct iterations, want %d", len(seen), a*b*c)
			}
			for k, v := range seen {
				if v != 1 {
					t.Fatalf("iteration %v ran %d times", k, v)
				}
			}
		})
	}
}

// gauge tracks how many bodies run at once and the most there ever were.
type gauge struct{ cur, most atomic.Int32 }

func (g *gauge) enter() {
	c := g.cur.Add(1)
	for m := g.most.Load(); c > m && !g.most.CompareAndSwap(m, c); m = g.most.Load() {
	}
}

func (g *gauge) exit() { g.cur.Add(-1) }

func TestRunningGoroutinesBounded(t *testing.T) {
	ctx := context.Background()
	for size := 1; size <= 4; size++ {
		t.Run(fmt.Sprintf("size=%d", size), func(t *testing.T) {
			p := newPool(t, size)
			var running gauge // goroutines inside a body at any level, counted once each
			var inner gauge   // innermost bodies
			err := For(ctx, 8, func(i int) error {
				running.enter()
				defer running.exit()
				return For(ctx, 50, func(j int) error {
					inner.enter()
					defer inner.exit()
					runtime.Gosched()
					return For(ctx, 3, func(k int) error { runtime.Gosched(); return nil }, OnPool(p))
				}, Schedule(Dynamic, 1), OnPool(p))
			}, Schedule(Dynamic, 1), OnPool(p))
			if err != nil {
				t.Fatal(err)
			}
			if m := running.most.Load(); m > int32(size) {
				t.Errorf("%d outer bodies at once on a pool of %d", m, size)
			}
			if m := inner.most.Load(); m > int32(size) {
				t.Errorf("%d inner bodies at once on a pool of %d", m, size)
			}
		})
	}
}

// panicky panics at 17; the tests look for its name in the stack.
func panicky(i int) error {
	if i == 17 {
		panic(fmt.Sprintf("boom at %d", i))
	}
	return nil
}

func TestPanicBecomesError(t *testing.T) {
	ctx := context.Background()
	for size := 1; size <= 3; size++ {
		p := newPool(t, size)
		calls := map[string]func() error{
			"For": func() error { return For(ctx, 100, panicky, OnPool(p)) },
			"ForRange": func() error {
				return ForRange(ctx, 100, func(lo, hi int) error {
					for i := lo; i < hi; i++ {
						_ = panicky(i)
					}
					return nil
				}, OnPool(p))
			},
			"Map": func() error {
				_, err := Map(ctx, []int{1, 17, 3}, func(x int) (int, error) { return x, panicky(x) }, OnPool(p))
				return err
			},
			"Reduce": func() error {
				_, err := Reduce(ctx, 100, 0, func(lo, hi, acc int) int { _ = panicky(lo); return acc + hi - lo },
					func(a, b int) int { return a + b }, Schedule(Dynamic, 1), OnPool(p))
				return err
			},
			"Join": func() error {
				return Join(ctx, func(context.Context) error { return nil },
					func(context.Context) error { return panicky(17) }, OnPool(p))
			},
			"Scope": func() error {
				return p.Scope(ctx, func(s *Scope) error {
					s.Go(func(context.Context) error { return panicky(17) })
					return nil
				})
			},
		}
		for name, call := range calls {
			err := call()
			var pe *PanicError
			if !errors.As(err, &pe) {
				t.Fatalf("size %d %s: got %v, want a *PanicError", size, name, err)
			}
			if pe.Value != "boom at 17" || !strings.Contains(string(pe.Stack), "threads.panicky") {
				t.Fatalf("size %d %s: value %v, stack without panicky:\n%s", size, name, pe.Value, pe.Stack)
			}
		}
	}
}

var errBody = errors.New("body failed")

func TestFirstErrorStopsTheLoop(t *testing.T) {
	ctx := context.Background()
	for size := 1; size <= 4; size++ {
		p := newPool(t, size)
		for _, sched := range scheduleCases() {
			o, err := collect([]Option{sched, OnPool(p)})
			if err != nil {
				t.Fatal(err)
			}
			// A body that starts once the loop is stopped passed its check
			// just before: at most one per other goroutine.
			var after atomic.Int32
			var l *loop
			l = eachIndex(ctx, 100000, func(i int) error {
				if l.stop.Load() {
					after.Add(1)
				}
				if i == 500 {
					return fmt.Errorf("at %d: %w", i, errBody)
				}
				return nil
			}, o)
			if err := l.run(ctx, p); !errors.Is(err, errBody) {
				t.Fatalf("size %d: got %v, want %v", size, err, errBody)
			}
			if a := after.Load(); a > int32(size-1) {
				t.Errorf("size %d %v: %d iterations started after the error", size, o.policy, a)
			}
		}
	}
}

func TestCancelStopsTheLoop(t *testing.T) {
	for size := 1; size <= 4; size++ {
		p := newPool(t, size)
		for _, sched := range scheduleCases() {
			ctx, cancel := context.WithCancel(context.Background())
			var after atomic.Int32
			var cancelled atomic.Bool
			err := For(ctx, 100000, func(i int) error {
				if cancelled.Load() {
					after.Add(1)
				}
				if i == 500 {
					cancel()
					cancelled.Store(true)
				}
				return nil
			}, sched, OnPool(p))
			cancel()
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("size %d: got %v, want context.Canceled", size, err)
			}
			if a := after.Load(); a > int32(size*checkEvery) {
				t.Errorf("size %d: %d iterations started after the cancellation", size, a)
			}
		}
	}
}

func TestCancelledBeforeTheCall(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	err := For(ctx, 10, func(int) error { ran = true; return nil }, OnPool(newPool(t, 2)))
	if !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("got %v (ran %v), want context.Canceled and no iteration", err, ran)
	}
}

func TestMapAndReduce(t *testing.T) {
	ctx := context.Background()
	for size := 1; size <= 4; size++ {
		p := newPool(t, size)
		in := make([]int, 1001)
		for i := range in {
			in[i] = i
		}
		out, err := Map(ctx, in, func(x int) (string, error) { return fmt.Sprint(x * 2), nil }, OnPool(p))
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range out {
			if s != fmt.Sprint(2*i) {
				t.Fatalf("out[%d] = %q", i, s)
			}
		}
		if _, err := Map(ctx, in, func(x int) (int, error) {
			if x == 99 {
				return 0, errBody
			}
			return x, nil
		}, OnPool(p)); !errors.Is(err, errBody) {
			t.Fatalf("Map: got %v, want %v", err, errBody)
		}
		for _, n := range []int{0, 1, 7, 1000, 100003} {
			got, err := Reduce(ctx, n, int64(0), func(lo, hi int, acc int64) int64 {
				for i := lo; i < hi; i++ {
					acc += int64(i) * int64(i%5)
				}
				return acc
			}, func(a, b int64) int64 { return a + b }, OnPool(p))
			want := int64(0)
			for i := range n {
				want += int64(i) * int64(i%5)
			}
			if err != nil || got != want {
				t.Fatalf("size %d n %d: Reduce = %d, %v; want %d", size, n, got, err, want)
			}
		}
	}
}

func TestReduceIsDeterministic(t *testing.T) {
	p := newPool(t, 4)
	sum := func() float64 {
		s, err := Reduce(context.Background(), 100003, 0.0, func(lo, hi int, acc float64) float64 {
			for i := lo; i < hi; i++ {
				acc += 1 / float64(i+1)
			}
			return acc
		}, func(a, b float64) float64 { return a + b }, OnPool(p))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := sum()
	for range 20 {
		if s := sum(); s != first {
			t.Fatalf("Reduce gave %v then %v", first, s)
		}
	}
}

func TestJoin(t *testing.T) {
	for size := 1; size <= 3; size++ {
		p := newPool(t, size)
		var a, b atomic.Bool
		err := Join(context.Background(),
			func(context.Context) error { a.Store(true); return nil },
			func(context.Context) error { b.Store(true); return nil }, OnPool(p))
		if err != nil || !a.Load() || !b.Load() {
			t.Fatalf("size %d: Join = %v, ran a %v b %v", size, err, a.Load(), b.Load())
		}
		// The first error cancels the other's context: b waits for it.
		err = Join(context.Background(),
			func(context.Context) error { return errBody },
			func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }, OnPool(p))
		if !errors.Is(err, errBody) {
			t.Fatalf("size %d: Join = %v, want %v", size, err, errBody)
		}
	}
}

func TestScope(t *testing.T) {
	ctx := context.Background()
	for size := 1; size <= 4; size++ {
		p := newPool(t, size)
		var ran atomic.Int32
		err := p.Scope(ctx, func(s *Scope) error {
			for range 10 {
				s.Go(func(context.Context) error {
					ran.Add(1)
					// Tasks start tasks, which use the pool too.
					s.Go(func(ctx context.Context) error {
						ran.Add(1)
						return For(ctx, 10, func(int) error { return nil }, OnPool(p))
					})
					return nil
				})
			}
			return nil
		})
		if err != nil || ran.Load() != 20 {
			t.Fatalf("size %d: Scope = %v after %d tasks, want 20", size, err, ran.Load())
		}
		// The first error cancels the others' context and no task starts
		// after it: a task that finds its context cancelled when it starts
		// had passed the scope's check just before the cancellation, which
		// each of the other goroutines running tasks (the caller and size-1
		// workers) can have done at most once.
		var after atomic.Int32
		err = p.Scope(ctx, func(s *Scope) error {
			s.Go(func(context.Context) error { return errBody })
			for range 100 {
				s.Go(func(ctx context.Context) error {
					if ctx.Err() != nil {
						after.Add(1)
					}
					return nil
				})
			}
			return nil
		})
		if !errors.Is(err, errBody) {
			t.Fatalf("size %d: Scope = %v, want %v", size, err, errBody)
		}
		if a := after.Load(); a > int32(size) {
			t.Errorf("size %d: %d tasks started after the error", size, a)
		}
	}
}

func TestCloseStopsWorkers(t *testing.T) {
	keep := goleak.IgnoreCurrent()
	p := New(4)
	if err := For(context.Background(), 1000, func(int) error { return nil }, OnPool(p)); err != nil {
		t.Fatal(err)
	}
	p.Close()
	p.Close()
	goleak.VerifyNone(t, keep)
	if err := For(context.Background(), 10, func(int) error { return nil }, OnPool(p)); !errors.Is(err, ErrClosed) {
		t.Errorf("For after Close = %v, want ErrClosed", err)
	}
	if err := p.Scope(context.Background(), func(*Scope) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Scope after Close = %v, want ErrClosed", err)
	}
	if err := Join(context.Background(), nil, nil, OnPool(p)); !errors.Is(err, ErrClosed) {
		t.Errorf("Join after Close = %v, want ErrClosed", err)
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	body := func(int) error { return nil }
	p := newPool(t, 2)
	for name, err := range map[string]error{
		"New(0)":         For(ctx, 1, body, OnPool(New(0))),
		"negative n":     For(ctx, -1, body, OnPool(p)),
		"negative chunk": For(ctx, 1, body, Schedule(Dynamic, -2), OnPool(p)),
		"negative grain": ForRange(ctx, 1, func(int, int) error { return nil }, Grain(-1), OnPool(p)),
		"bad policy":     For(ctx, 1, body, Schedule(Policy(9), 0), OnPool(p)),
	} {
		if err == nil || !strings.HasPrefix(err.Error(), "threads: ") {
			t.Errorf("%s: got %v, want a threads error", name, err)
		}
	}
}

func TestDefaultSize(t *testing.T) {
	t.Setenv(EnvThreads, "3")
	if n, err := defaultSize(); n != 3 || err != nil {
		t.Errorf("PMRUN_THREADS=3: %d, %v", n, err)
	}
	for _, bad := range []string{"x", "0", "-2", "1.5"} {
		t.Setenv(EnvThreads, bad)
		if _, err := defaultSize(); err == nil || !strings.Contains(err.Error(), EnvThreads) {
			t.Errorf("PMRUN_THREADS=%q: got %v, want an error naming %s", bad, err, EnvThreads)
		}
	}
	os.Unsetenv(EnvThreads)
	if n, err := defaultSize(); n != runtime.GOMAXPROCS(0) || err != nil {
		t.Errorf("PMRUN_THREADS unset: %d, %v; want GOMAXPROCS %d", n, err, runtime.GOMAXPROCS(0))
	}
}

// onWorker reports whether the calling goroutine is one of a pool's workers.
func onWorker() bool {
	buf := make([]byte, 64<<10)
	return strings.Contains(string(buf[:runtime.Stack(buf, false)]), "threads.(*Pool).worker")
}

func TestGoexitInABody(t *testing.T) {
	p := New(2)
	defer p.Close()
	// Two blocks (then two tasks), which meet at their first iteration, so
	// that the caller runs one and the worker the other; the worker's ends
	// its goroutine.
	var both sync.WaitGroup
	both.Add(2)
	err := For(context.Background(), 1000, func(i int) error {
		if i == 0 || i == 500 {
			both.Done()
			both.Wait()
			if onWorker() {
				runtime.Goexit()
			}
		}
		return nil
	}, Schedule(Static, 0), OnPool(p))
	if !errors.Is(err, errGoexit) {
		t.Fatalf("For = %v, want %v", err, errGoexit)
	}
	p = New(2) // the first one lost its worker
	defer p.Close()
	both.Add(2)
	err = p.Scope(context.Background(), func(s *Scope) error {
		for range 2 {
			s.Go(func(context.Context) error {
				both.Done()
				both.Wait()
				if onWorker() {
					runtime.Goexit()
				}
				return nil
			})
		}
		return nil
	})
	if !errors.Is(err, errGoexit) {
		t.Fatalf("Scope = %v, want %v", err, errGoexit)
	}
}

func TestConcurrentCallers(t *testing.T) {
	p := newPool(t, 3)
	const callers, n = 4, 5000
	counts := make([]atomic.Int32, callers*n)
	errs := make(chan error, callers)
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			errs <- For(context.Background(), n, func(i int) error {
				counts[c*n+i].Add(1)
				return nil
			}, Schedule(Dynamic, 7), OnPool(p))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkOnce(t, counts)
}

func TestMixedNesting(t *testing.T) {
	ctx := context.Background()
	for size := 1; size <= 4; size++ {
		p := newPool(t, size)
		var leaves atomic.Int32
		err := p.Scope(ctx, func(s *Scope) error {
			for range 4 {
				s.Go(func(ctx context.Context) error {
					return Join(ctx, func(ctx context.Context) error {
						return For(ctx, 10, func(int) error {
							return p.Scope(ctx, func(s *Scope) error {
								s.Go(func(context.Context) error { leaves.Add(1); return nil })
								return nil
							})
						}, OnPool(p))
					}, func(ctx context.Context) error {
						_, err := Reduce(ctx, 10, 0, func(lo, hi, acc int) int {
							leaves.Add(int32(hi - lo))
							return acc
						}, func(a, b int) int { return a + b }, OnPool(p))
						return err
					}, OnPool(p))
				})
			}
			return nil
		})
		if err != nil || leaves.Load() != 4*20 {
			t.Fatalf("size %d: %v after %d leaves, want 80", size, err, leaves.Load())
		}
	}
}
