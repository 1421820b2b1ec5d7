package collective

import (
	"strings"

	"github.com/pmrun/pmrun/comm"
)

// OnChoose makes fn see the algorithm each blocking call picks, from now on
// and on every goroutine (fn must be safe for concurrent use); stop undoes it.
func OnChoose(fn func(c *comm.Comm, family string, nbytes int, commutative bool, alg string)) (stop func()) {
	onChoose.Store(&fn)
	return func() { onChoose.Store(nil) }
}

// HasShared is hasShared, for TestHasShared.
func HasShared(family string) bool { return hasShared(family) }

// Families lists the families of algorithms.
func Families() []string {
	var fs []string
	for f := range algorithms {
		fs = append(fs, f)
	}
	return fs
}

// SetForced sets PMRUN_COLL_<FAMILY> to alg for t, and makes the selector
// read it again (it reads the variables once), now and when t ends.
func SetForced(t interface {
	Setenv(key, value string)
	Cleanup(func())
}, family, alg string) {
	t.Setenv("PMRUN_COLL_"+strings.ToUpper(family), alg)
	forcedAlgs.Store(nil)
	t.Cleanup(func() { forcedAlgs.Store(nil) })
}
