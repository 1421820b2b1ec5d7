package main

import "C"

import (
	"context"
	"fmt"
	"unsafe"

	"github.com/pmrun/pmrun/collective"
)

// Topologies are kept by Python (they are bookkeeping over a communicator);
// a neighbourhood collective passes the one it runs on.
//
//pmrun:abi
const (
	topoCart  = 1 // a: dims, b: periods (0 or 1), na = nb = the number of dimensions
	topoGraph = 2 // a: the sources, b: the destinations (a graph or a distributed graph)
)

// pm_neighbor_alltoallv is the neighbourhood alltoallv on communicator h seen
// as topology kind (a and b, na and nb values, as topoCart and topoGraph
// say): rcounts/rdispls lay out one block per source in rbuf, scounts/sdispls
// one per destination in sbuf (bytes). The other neighbourhood collectives
// are this one with other layouts.
//
//export pm_neighbor_alltoallv
func pm_neighbor_alltoallv(h, kind int64, a unsafe.Pointer, na int64, b unsafe.Pointer, nb int64, sbuf unsafe.Pointer, scap int64, scounts, sdispls, rbuf unsafe.Pointer, rcap int64, rcounts, rdispls unsafe.Pointer, req *int64) int64 {
	c, err := commOf(h)
	if err != nil {
		return fail(err)
	}
	if na < 0 || nb < 0 || (na > 0 && a == nil) || (nb > 0 && b == nil) {
		return fail(fmt.Errorf("topology of %d and %d values: %w", na, nb, errBadCount))
	}
	av, bv := int64sAt(a, na), int64sAt(b, nb)
	var t collective.Topology
	switch kind {
	case topoCart:
		periods := make([]bool, len(bv))
		for i, p := range bv {
			periods[i] = p != 0
		}
		t, err = collective.CartOf(c, av, periods)
	case topoGraph:
		t, err = collective.DistGraphOf(c, av, nil, bv, nil)
	default:
		err = fmt.Errorf("topology kind %d: %w", kind, errBadCount)
	}
	if err != nil {
		return fail(err)
	}
	srcs, dsts := t.Neighbors()
	recv, err := vregionOf("receive", rbuf, rcap, rcounts, rdispls, int64(len(srcs)), len(srcs), errRecvShort)
	if err != nil {
		return fail(err)
	}
	send, err := vregionOf("send", sbuf, scap, scounts, sdispls, int64(len(dsts)), len(dsts), errSendShort)
	if err != nil {
		return fail(err)
	}
	return run(c, req, func(ctx context.Context) error {
		return collective.NeighborAlltoallvBytes(ctx, t, send.buf, send.counts, send.displs, recv.buf, recv.counts, recv.displs)
	})
}

// int64sAt copies the n C int64s at p.
func int64sAt(p unsafe.Pointer, n int64) []int {
	if n == 0 {
		return nil
	}
	out := make([]int, n)
	for i, v := range unsafe.Slice((*int64)(p), n) {
		out[i] = int(v)
	}
	return out
}
