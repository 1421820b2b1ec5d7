package cpuhome

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pmrun/pmrun/internal/rankenv"
)

func allowed(t *testing.T) (unix.CPUSet, []int) {
	t.Helper()
	set, cpus, err := Allowed()
	if err != nil {
		t.Fatal(err)
	}
	return set, cpus
}

func TestHomeIsTheRanksShareAndLeavesItFree(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	all, cpus := allowed(t)
	if len(cpus) < 2 {
		t.Skipf("needs 2 CPUs to give two ranks a home each; this process may run on %d", len(cpus))
	}
	defer current.Store(nil)
	Set(rankenv.Env{LocalRank: 1, LocalSize: 2, Threads: len(cpus) / 2})
	p := current.Load()
	if p == nil {
		t.Fatal("no home for rank 1 of 2 on a node whose CPUs fit them")
	}
	want := cpus[len(cpus)/2]
	if p.home.Count() != 1 || !p.home.IsSet(want) {
		t.Fatalf("home %v, want CPU %d (the first of rank 1's share)", p.home, want)
	}
	if now, _ := allowed(t); now != all {
		t.Fatalf("the thread may run on %v after Set, want all it could before (%v): a home is not a binding", now, all)
	}
	Check() // at home or moved there: the mask stays whole either way
	if now, _ := allowed(t); now != all {
		t.Fatalf("the thread may run on %v after Check, want %v", now, all)
	}
}

func TestNoHome(t *testing.T) {
	_, cpus := allowed(t)
	defer current.Store(nil)
	for _, env := range []rankenv.Env{
		{LocalRank: 0, LocalSize: 1},                     // alone on its node
		{LocalRank: 0, LocalSize: len(cpus) + 1},         // more ranks than CPUs
		{LocalRank: 0, LocalSize: 2, Threads: len(cpus)}, // threads more than the CPUs
		{LocalRank: 1, LocalSize: 2, HostSize: 4},        // nodes simulated on one machine
		{LocalRank: 2, LocalSize: 2},                     // not a local rank
	} {
		Set(env)
		if current.Load() != nil {
			t.Errorf("%+v: got a home", env)
		}
		Check()
	}
}
