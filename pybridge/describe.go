package main

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
)

// describe words err for a Python user, in MPI's terms: the peer ("rank 1",
// "any source") and what was done with it, never the runtime's layers or the
// reserved tags its collectives use. Python puts the method's name in front
// ("MPI.Comm.Barrier: lost rank 1 (...)").
func describe(err error) string {
	var pe *comm.PeerError
	if errors.As(err, &pe) {
		return fmt.Sprintf("lost rank %d (%s)", pe.Rank, plain(pe.Reason))
	}
	var re *comm.RankError
	if errors.As(err, &re) {
		return fmt.Sprintf("%s: %s", peerOf(re), describe(re.Err))
	}
	var ce *collective.Error
	if errors.As(err, &ce) {
		return describe(ce.Err)
	}
	if errors.Is(err, comm.ErrTruncated) {
		return "message truncated: the receive buffer is smaller than the message"
	}
	return plain(err)
}

// peerOf is "receive from rank 1 (tag 5)", "send to rank 2", "receive from
// any source": the tag only when it is a user's (collectives use negative
// ones).
func peerOf(re *comm.RankError) string {
	peer := fmt.Sprintf("rank %d", re.Rank)
	if re.Rank == comm.AnySource {
		peer = "any source"
	}
	verb := "receive from" // also for probe: receives of objects start with one
	switch re.Op {
	case "send", "isend", "issend", "ssend":
		verb = "send to"
	}
	if re.Tag >= 0 {
		return fmt.Sprintf("%s %s (tag %d)", verb, peer, re.Tag)
	}
	return fmt.Sprintf("%s %s", verb, peer)
}

// layers matches the package prefixes of the runtime's messages.
var layers = regexp.MustCompile(`\b(comm|collective)(: [a-z_]+)?: `)

// plain is err's text without the runtime's package prefixes.
func plain(err error) string {
	if err == nil {
		return "no reason given"
	}
	return layers.ReplaceAllString(err.Error(), "")
}
