package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
)

func TestDescribe(t *testing.T) {
	lost := &comm.PeerError{Rank: 1, Reason: errors.New("connection reset")}
	for _, tc := range []struct {
		err       error
		want      string
		forbidden []string
	}{
		{&collective.Error{Op: "barrier", Err: &comm.RankError{Op: "send", Rank: 1, Tag: -17, Err: lost}},
			"lost rank 1 (connection reset)", []string{"tag", "comm:", "collective:"}},
		{&comm.RankError{Op: "probe", Rank: comm.AnySource, Tag: comm.AnyTag, Err: comm.ErrClosed},
			"receive from any source: communicator closed", []string{"tag", "probe"}},
		{&comm.RankError{Op: "recv", Rank: 2, Tag: 5, Err: comm.ErrTruncated},
			"receive from rank 2 (tag 5): message truncated", nil},
		{&comm.RankError{Op: "send", Rank: 3, Tag: 0, Err: fmt.Errorf("%w: 3 not in [0, 2)", comm.ErrInvalidRank)},
			"send to rank 3 (tag 0): invalid rank: 3 not in [0, 2)", nil},
		{&collective.Error{Op: "allreduce", Err: errors.New("collective: allreduce: rank 0 sent 8 bytes, want 16 (mismatched counts?)")},
			"rank 0 sent 8 bytes, want 16", []string{"collective"}},
	} {
		got := describe(tc.err)
		if !strings.Contains(got, tc.want) {
			t.Errorf("describe(%v) = %q, want it to say %q", tc.err, got, tc.want)
		}
		for _, f := range tc.forbidden {
			if strings.Contains(got, f) {
				t.Errorf("describe(%v) = %q mentions %q", tc.err, got, f)
			}
		}
	}
}
