package shm

// StoreRelease stores v at *addr with a plain move: on amd64 every store is
// a release (no earlier load or store passes it), which is all a publish
// needs, where atomic's Store is an exchange, a full fence that waits until
// the line is this core's and every earlier store has drained. Loads that
// follow may pass it; see Publish.
//
//go:noescape
func StoreRelease(addr *uint64, v uint64)
