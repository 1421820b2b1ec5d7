// Package commx is package comm's internal API for the packages above it
// (collective): what they need of a communicator that users do not. Package
// comm fills it in when it is initialised; since comm imports this package
// (not the other way round), communicators appear here as any, and only a
// *comm.Comm may be passed.
package commx

import "github.com/pmrun/pmrun/internal/shm"

var (
	slots    func(c any, agree func(mapped bool) bool) *shm.Slots
	mapped   func(c any) *shm.Slots
	hasSlots func(c any) bool
	sockets  func(c any) bool
)

// Register installs package comm's implementations; comm's init calls it.
func Register(slotsFn func(c any, agree func(mapped bool) bool) *shm.Slots, mappedFn func(c any) *shm.Slots, hasSlotsFn func(c any) bool) {
	slots, mapped, hasSlots = slotsFn, mappedFn, hasSlotsFn
}

// Mapped returns c's shared area if Slots has mapped it and the members
// agreed, else nil: the hot path of every call after the first, without the
// agreement function Slots takes (a closure to allocate).
func Mapped(c any) *shm.Slots { return mapped(c) }

// RegisterSockets installs package comm's Sockets; comm's init calls it.
func RegisterSockets(fn func(c any) bool) { sockets = fn }

var directMax func(c any) int

// RegisterDirect installs package comm's DirectMax; comm's init calls it.
func RegisterDirect(fn func(c any) int) { directMax = fn }

// DirectMax is the largest message that crosses between two ranks of
// communicator c with a single copy, read straight from the sender's memory
// (math.MaxInt: every size; 0: none). Every member sees the same answer:
// it comes from the configuration, not from what a link found it may do.
func DirectMax(c any) int { return directMax(c) }

// Sockets reports whether the ranks of communicator c exchange their
// messages through sockets: they run on several nodes, or on one node with
// shared memory turned off (PMRUN_SHM=off). Then every message costs system
// calls and a copy through the kernel on each side, and the collectives pick
// their algorithms as between nodes. Every member sees the same answer.
func Sockets(c any) bool { return sockets(c) }

// Slots returns the communicator c's shared area for small collectives,
// mapping it on first use, or nil when c has none. c cannot have one when it
// has a single rank or its ranks run on several nodes or are connected
// without shared memory (in-process worlds, PMRUN_SHM=0); those facts every
// member sees alike.
//
// A member may fail to map it (a full /dev/shm) where others succeed, so the
// first call passes whether this member did to agree, a collective on c that
// returns whether every member did. If not, all unmap it and c keeps to
// messages: HasSlots is false from then on, on every member. All members
// must make their first call at the same point of c's sequence of collectives.
func Slots(c any, agree func(mapped bool) bool) *shm.Slots { return slots(c, agree) }

// HasSlots reports whether the communicator c has, or may still map, a
// shared area (Slots).
func HasSlots(c any) bool { return hasSlots(c) }
