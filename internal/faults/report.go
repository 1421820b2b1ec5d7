package faults

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Table sums up results by fault kind: runs, outcomes, time from the fault
// to the exit (runs whose fault struck) and leftovers, with a total line.
func Table(w io.Writer, results []Result) {
	kinds := []Kind{None, KillRank, StopRank, KillWorker, StopWorker, KillAgent, SlowLink, KillContainer, Disconnect, FullShm}
	outs := []Outcome{Answer, Named, Late, Unnamed, Wrong, Hang, Broken}
	fmt.Fprintf(w, "| fault | runs | struck |")
	for _, o := range outs {
		fmt.Fprintf(w, " %s |", o)
	}
	fmt.Fprintf(w, " to exit p50 / p90 / max | leftovers |\n|---|---|---|%s---|---|\n", strings.Repeat("---|", len(outs)))
	row := func(name string, rs []Result) {
		if len(rs) == 0 {
			return
		}
		count := map[Outcome]int{}
		struck, left := 0, 0
		var times []time.Duration
		for _, r := range rs {
			count[r.Outcome]++
			left += len(r.Leftovers)
			if r.Injected {
				struck++
				times = append(times, r.ToExit)
			}
		}
		fmt.Fprintf(w, "| %s | %d | %d |", name, len(rs), struck)
		for _, o := range outs {
			fmt.Fprintf(w, " %d |", count[o])
		}
		fmt.Fprintf(w, " %s | %d |\n", percentiles(times), left)
	}
	for _, k := range kinds {
		var rs []Result
		for _, r := range results {
			if r.Run.Fault == k {
				rs = append(rs, r)
			}
		}
		row(string(k), rs)
	}
	row("all", results)
}

func percentiles(ts []time.Duration) string {
	if len(ts) == 0 {
		return "-"
	}
	slices.Sort(ts)
	at := func(p float64) string {
		i := int(p*float64(len(ts))+0.5) - 1
		return fmt.Sprintf("%.2f", ts[max(0, min(i, len(ts)-1))].Seconds())
	}
	return at(0.5) + " / " + at(0.9) + " / " + at(1) + " s"
}

// Line is a result on one line, for the campaign's log.
func Line(r Result) string {
	s := fmt.Sprintf("%-7s exit=%d", r.Outcome, r.ExitCode)
	if r.Injected {
		s += fmt.Sprintf(" to-exit=%.2fs", r.ToExit.Seconds())
	}
	s += " " + r.Run.String()
	if len(r.Leftovers) > 0 {
		s += " LEFTOVERS: " + strings.Join(r.Leftovers, "; ")
	}
	if r.Why != "" && !r.Pass() {
		s += "\n    " + strings.ReplaceAll(r.Why, "\n", "\n    ")
	}
	return s
}
