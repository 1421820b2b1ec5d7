package faults

import (
	"reflect"
	"testing"
)

// TestPlan checks that a seed always draws the same run, that every run is
// one the harness can carry out, and that every fault kind and place is drawn.
func TestPlan(t *testing.T) {
	kinds, places := map[Kind]bool{}, map[string]bool{}
	for seed := int64(1); seed <= 2000; seed++ {
		r := Plan(seed, true)
		if !reflect.DeepEqual(r, Plan(seed, true)) {
			t.Fatalf("seed %d draws two runs: %v and %v", seed, r, Plan(seed, true))
		}
		if r.NP < 2 || r.NP > 16 || r.Rounds < 1 || r.Target < 0 {
			t.Fatalf("seed %d: %v", seed, r)
		}
		if (r.Place == Agents || r.Place == Docker) && r.Nodes < 2 {
			t.Fatalf("seed %d: %v has no nodes", seed, r)
		}
		if Plan(seed, false).Place == Docker {
			t.Fatalf("seed %d draws a Docker run without Docker", seed)
		}
		kinds[r.Fault], places[r.Place] = true, true
	}
	if len(kinds) != 10 || len(places) != 4 {
		t.Errorf("2000 seeds draw faults %v and places %v", kinds, places)
	}
}
