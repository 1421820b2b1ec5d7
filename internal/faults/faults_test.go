package faults

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/pmrun/pmrun/internal/e2e"
)

// TestCampaignSlice is the slice of the fault campaign that make test runs:
// ten seeded runs on this machine (no Docker), each of which must end with
// the right answer or a non-zero exit naming the culprit, and leave nothing
// behind. How soon it exits is measured, not asserted (a test makes no timed
// assertion; a loaded machine is slow): make faults reports it.
func TestCampaignSlice(t *testing.T) {
	e2e.NotShort(t, "the fault campaign's slice")
	bin := os.Getenv("PMRUN_BIN")
	e2e.Require(t, bin != "", "PMRUN_BIN is not set (make test sets it to the built launcher)")
	_, err := exec.LookPath("python3")
	e2e.Require(t, err == nil, "no python3 on this machine")
	h, err := New(Config{Bin: bin, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for seed := int64(1); seed <= 10; seed++ {
		r := h.Run(context.Background(), Plan(seed, false))
		t.Log(Line(r))
		if ok := r.Outcome == Answer || r.Outcome == Named || r.Outcome == Late; !ok || len(r.Leftovers) > 0 {
			t.Errorf("run failed: %s", Line(r))
		}
	}
}
