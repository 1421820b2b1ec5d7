package collective

import "github.com/pmrun/pmrun/comm"

// OnChoose makes fn see the algorithm each blocking call picks, from now on
// and on every goroutine (fn must be safe for concurrent use); stop undoes it.
func OnChoose(fn func(c *comm.Comm, family string, nbytes int, commutative bool, alg string)) (stop func()) {
	onChoose.Store(&fn)
	return func() { onChoose.Store(nil) }
}
