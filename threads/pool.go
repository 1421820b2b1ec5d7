package threads

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
)

// EnvThreads is the variable that sizes the default pool; the pmrun launcher
// sets it for every rank (from --threads, else the rank's share of its node's
// cores).
const EnvThreads = "PMRUN_THREADS"

// Pool runs the bodies of parallel calls on a fixed set of goroutines: Size()-1
// workers started by New plus the goroutine that makes the call, which runs its
// own work while it waits. A body that makes a nested call runs the nested
// work itself in the same way, so nesting at any depth neither deadlocks nor
// adds goroutines: with one calling goroutine, at most Size() goroutines run
// bodies at once (each other goroutine calling into the pool at the same time
// adds itself). Idle workers park; they do not spin.
//
// A Pool is safe for concurrent use. Close stops it.
type Pool struct {
	size int
	err  error // set when the pool could not be built; every call returns it
	wg   sync.WaitGroup

	mu     sync.Mutex // guards the fields below, every job's active, listed and waiting, and every scope's queue
	cond   *sync.Cond // signalled when a job is listed or the pool closes
	open   []*job     // jobs with work left to hand out, newest last
	closed bool
}

// job is one parallel call as the workers see it: help claims and runs pieces
// of its work until none is left to hand out.
type job struct {
	help    func()
	more    func() bool // whether there is work left to hand out; called with Pool.mu held
	active  int         // workers inside help
	listed  bool        // in Pool.open
	waiting bool        // the caller waits on done for active to reach 0
	done    chan struct{}
}

var (
	defaultOnce sync.Once
	defaultPool *Pool
)

// Default returns the rank's pool, created on first use with PMRUN_THREADS
// goroutines when that variable is set, else runtime.GOMAXPROCS(0). When
// PMRUN_THREADS is malformed every call on the pool returns an error naming it.
func Default() *Pool {
	defaultOnce.Do(func() {
		n, err := defaultSize()
		if err != nil {
			defaultPool = &Pool{size: 1, err: err}
			return
		}
		defaultPool = New(n)
	})
	return defaultPool
}

// defaultSize reads PMRUN_THREADS, falling back to GOMAXPROCS.
func defaultSize() (int, error) {
	v, ok := os.LookupEnv(EnvThreads)
	if !ok || v == "" {
		return runtime.GOMAXPROCS(0), nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("threads: %s=%q must be a positive integer", EnvThreads, v)
	}
	return n, nil
}

// Size returns the size of the default pool.
func Size() int { return Default().Size() }

// New starts a pool of n goroutines: n-1 workers, and the caller of each call.
// When n < 1 every call on the pool returns an error saying so.
func New(n int) *Pool {
	if n < 1 {
		return &Pool{size: 1, err: fmt.Errorf("threads: pool size %d must be positive", n)}
	}
	p := &Pool{size: n}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(n - 1)
	for range n - 1 {
		go p.worker()
	}
	return p
}

// Size returns the number of goroutines that run the pool's bodies.
func (p *Pool) Size() int { return p.size }

// Close waits for the work already started to finish and for the workers to
// exit; later calls return ErrClosed. Close is idempotent. It must not be
// called from a body running on the pool, which it would wait for.
func (p *Pool) Close() error {
	if p.err != nil {
		return nil
	}
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// usable reports why the pool cannot take a call, if it cannot.
func (p *Pool) usable() error {
	if p.err != nil {
		return p.err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	return nil
}

// worker runs listed jobs, newest first (which finishes nested calls before
// the outer work they belong to), and parks when there are none.
func (p *Pool) worker() {
	defer p.wg.Done()
	for {
		j := p.take()
		if j == nil {
			return
		}
		p.helpWith(j)
	}
}

// take waits for a listed job and joins it, or returns nil once the pool is
// closed and no job is left.
func (p *Pool) take() *job {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.open) == 0 && !p.closed {
		p.cond.Wait()
	}
	if len(p.open) == 0 {
		return nil
	}
	j := p.open[len(p.open)-1]
	j.active++
	return j
}

// helpWith runs j's help and leaves j, even if a body ends the goroutine
// with runtime.Goexit.
func (p *Pool) helpWith(j *job) {
	defer func() {
		p.mu.Lock()
		p.leave(j)
		p.mu.Unlock()
	}()
	j.help()
}

// leave records that a worker's help returned: the job has nothing left to
// hand out (unless new work came in, as a scope's may), so it is unlisted, and
// the last worker out wakes a waiting caller. Called with p.mu held.
func (p *Pool) leave(j *job) {
	if j.listed && !j.more() {
		p.unlist(j)
	}
	j.active--
	if j.active == 0 && j.waiting {
		j.waiting = false
		close(j.done)
	}
}

// post lists j for the workers and wakes up to wake of them; it returns
// ErrClosed when the pool is closed.
func (p *Pool) post(j *job, wake int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	p.list(j, wake)
	return nil
}

// list puts j on the open list and wakes up to wake workers. Called with p.mu
// held.
func (p *Pool) list(j *job, wake int) {
	j.listed = true
	p.open = append(p.open, j)
	wake = min(wake, p.size-1)
	if wake >= p.size-1 {
		p.cond.Broadcast()
		return
	}
	for range wake {
		p.cond.Signal()
	}
}

// unlist takes j off the open list. Called with p.mu held.
func (p *Pool) unlist(j *job) {
	for i := len(p.open) - 1; i >= 0; i-- {
		if p.open[i] == j {
			copy(p.open[i:], p.open[i+1:])
			p.open[len(p.open)-1] = nil
			p.open = p.open[:len(p.open)-1]
			break
		}
	}
	j.listed = false
}

// finish is called by the caller of a job once its own help has returned: it
// unlists the job so that no worker joins it any more and waits for the
// workers still inside.
func (p *Pool) finish(j *job) {
	p.mu.Lock()
	if j.listed {
		p.unlist(j)
	}
	if j.active == 0 {
		p.mu.Unlock()
		return
	}
	j.waiting = true
	j.done = make(chan struct{})
	done := j.done
	p.mu.Unlock()
	<-done
}
