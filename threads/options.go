package threads

import "fmt"

// Policy says how a loop's iterations are divided among the goroutines of a
// pool, after OpenMP's schedule clause.
type Policy int

const (
	// Auto lets the package choose; it is Guided with the chunk (or Grain)
	// as the smallest chunk, which suits both even and uneven work.
	Auto Policy = iota
	// Static cuts the iterations into Size() contiguous blocks of equal
	// length, or, when a chunk is given, deals chunks round-robin: the
	// goroutine that takes lane k runs chunks k, k+Size(), k+2·Size()...
	Static
	// Dynamic hands out chunks (default 1 iteration) from a shared atomic
	// counter, first come first served.
	Dynamic
	// Guided hands out chunks of decreasing length, remaining/(2·Size()),
	// never shorter than the chunk (default 1).
	Guided
)

var policyNames = [...]string{Auto: "auto", Static: "static", Dynamic: "dynamic", Guided: "guided"}

// String returns the policy's name as OpenMP spells it.
func (s Policy) String() string {
	if s >= 0 && int(s) < len(policyNames) {
		return policyNames[s]
	}
	return fmt.Sprintf("Policy(%d)", int(s))
}

// Option changes how one call runs.
type Option func(*options)

type options struct {
	pool   *Pool
	policy Policy
	chunk  int // 0: the policy's default
	grain  int // smallest chunk; 0 means 1
}

// Schedule sets the loop's schedule and chunk length (0: the policy's
// default). A chunk below Grain is raised to Grain.
func Schedule(p Policy, chunk int) Option {
	return func(o *options) { o.policy, o.chunk = p, chunk }
}

// Grain sets the smallest number of iterations handed out at once, so that a
// cheap body is not drowned in scheduling; ForRange's ranges are never
// shorter, except the last.
func Grain(n int) Option {
	return func(o *options) { o.grain = n }
}

// OnPool runs the call on p instead of the default pool.
func OnPool(p *Pool) Option {
	return func(o *options) { o.pool = p }
}

// collect applies opts and checks them; the pool is Default() unless OnPool
// says otherwise.
func collect(opts []Option) (*options, error) {
	o := &options{}
	for _, f := range opts {
		f(o)
	}
	if o.pool == nil {
		o.pool = Default()
	}
	switch {
	case o.chunk < 0:
		return nil, fmt.Errorf("threads: chunk %d must not be negative", o.chunk)
	case o.grain < 0:
		return nil, fmt.Errorf("threads: grain %d must not be negative", o.grain)
	case o.policy < Auto || o.policy > Guided:
		return nil, fmt.Errorf("threads: unknown schedule %v", o.policy)
	}
	o.chunk = max(o.chunk, o.grain)
	return o, nil
}
