package node

import (
	"fmt"
	"io"
	"text/tabwriter"

	"golang.org/x/sys/unix"

	"github.com/pmrun/pmrun/internal/cpuhome"
)

// NodeMap is one node's part of a job: its ranks, the threads each gets and
// the node's cores, as --display-map shows it.
type NodeMap struct {
	Node    string
	Ranks   []int
	Threads int
	Cores   int
}

// rankThreads is the threads each of n ranks on a node of cores gets: want
// when given, else the rank's share of the node's cores (at least 1).
func rankThreads(want, cores, n int) int {
	if want > 0 {
		return want
	}
	return max(1, cores/max(n, 1))
}

// writeMap writes the job's placement as a table, one line per node.
func writeMap(w io.Writer, ms []NodeMap) {
	np := 0
	for _, m := range ms {
		np += len(m.Ranks)
	}
	fmt.Fprintf(w, "pmrun: job map: %d ranks on %d nodes\n", np, len(ms))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tRANKS\tTHREADS\tCORES")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", m.Node, rankList(m.Ranks), m.Threads, m.Cores)
	}
	tw.Flush()
}

// allowedCPUs lists the CPUs this process may run on, in order.
func allowedCPUs() ([]int, error) {
	_, cpus, err := cpuhome.Allowed()
	if err != nil {
		return nil, fmt.Errorf("node: reading this process's CPUs: %w", err)
	}
	return cpus, nil
}

// coreShare is the CPU set of the i-th rank of a node whose ranks get t CPUs
// each of allowed, in order, wrapping around when they are more than the CPUs.
func coreShare(allowed []int, i, t int) *unix.CPUSet {
	var set unix.CPUSet
	for j := range min(t, len(allowed)) {
		set.Set(allowed[(i*t+j)%len(allowed)])
	}
	return &set
}
