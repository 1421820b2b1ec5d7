package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/pmrun/pmrun/comm"
)

// TestObjSizes: lengths that peers announce for object collectives are
// refused when negative or, together, over MaxMessage, naming the knob; a
// receiver never allocates them.
func TestObjSizes(t *testing.T) {
	cfg := comm.DefaultConfig()
	cfg.MaxMessage = 1 << 20
	cs, err := comm.NewLocalWorld(1, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cs[0].Close()
	c := cs[0]
	if n, err := objSizes(c, 1<<19, 1<<19); err != nil || n != 1<<20 {
		t.Errorf("at the limit: %d, %v", n, err)
	}
	for _, sizes := range [][]int64{{1<<20 + 1}, {1 << 19, 1<<19 + 1}, {1 << 62, 1 << 62, 1 << 62}} {
		if _, err := objSizes(c, sizes...); !errors.Is(err, comm.ErrMessageLarge) || !strings.Contains(err.Error(), "PMRUN_MAX_MESSAGE") {
			t.Errorf("sizes %v: %v, want ErrMessageLarge naming PMRUN_MAX_MESSAGE", sizes, err)
		}
	}
	if _, err := objSizes(c, 5, -1); err == nil || !strings.Contains(err.Error(), "-1 bytes") {
		t.Errorf("a negative size: %v", err)
	}
}
