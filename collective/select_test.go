package collective_test

import (
	"slices"
	"testing"

	"github.com/pmrun/pmrun/collective"
)

// TestHasShared: the switch that says which families may use the shared
// area agrees with the table of algorithms.
func TestHasShared(t *testing.T) {
	fs := collective.Families()
	if len(fs) == 0 {
		t.Fatal("no families")
	}
	for _, f := range append(fs, "nope", "") {
		if got, want := collective.HasShared(f), slices.Contains(collective.Algorithms(f), collective.AlgShared); got != want {
			t.Errorf("%q: hasShared %v, its algorithms %v", f, got, collective.Algorithms(f))
		}
	}
}
