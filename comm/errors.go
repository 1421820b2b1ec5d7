package comm

import (
	"errors"
	"fmt"

	"github.com/pmrun/pmrun/internal/wire"
)

// Sentinel errors. Match them with errors.Is: operations wrap them in *RankError.
var (
	// ErrClosed is returned by operations on a closed communicator or world.
	ErrClosed = errors.New("comm: communicator closed")
	// ErrTruncated is returned when a message is larger than the receive buffer.
	ErrTruncated = errors.New("comm: message truncated: receive buffer too small")
	// ErrPeerLost is returned when the connection to a rank broke or the rank died.
	ErrPeerLost = errors.New("comm: peer lost")
	// ErrInvalidRank is returned for a rank outside [0, Size).
	ErrInvalidRank = errors.New("comm: invalid rank")
	// ErrInvalidTag is returned for a tag a user may not send or receive on.
	ErrInvalidTag = errors.New("comm: invalid tag")
	// ErrAborted is returned when the job is being aborted.
	ErrAborted = errors.New("comm: job aborted")
	// ErrMessageLarge is returned for a send longer than Config.MaxMessage.
	ErrMessageLarge = errors.New("comm: message over the limit (Config.MaxMessage, PMRUN_MAX_MESSAGE)")
	// ErrNotShared is returned by AllocShared over ranks of several nodes.
	ErrNotShared = errors.New("comm: ranks do not share a node")
)

// RankError is returned by every rank-addressed operation. Rank is the peer's rank
// in the communicator (AnySource for a wildcard receive), Tag the message tag.
type RankError struct {
	Op   string
	Rank int
	Tag  int
	Err  error
}

func (e *RankError) Error() string {
	from := fmt.Sprintf("rank %d", e.Rank)
	if e.Rank == AnySource {
		from = "any source"
	}
	tag := fmt.Sprintf("tag %d", e.Tag)
	if e.Tag == AnyTag {
		tag = "any tag"
	}
	return fmt.Sprintf("comm: %s %s %s: %v", e.Op, from, tag, e.Err)
}

// Unwrap returns the underlying error, so errors.Is(err, comm.ErrTruncated) and
// errors.Is(err, context.Canceled) match through a *RankError.
func (e *RankError) Unwrap() error { return e.Err }

// PeerError says which world rank was lost and why; it wraps ErrPeerLost.
type PeerError struct {
	Rank   int // world rank of the lost peer
	Reason error
}

func (e *PeerError) Error() string {
	return fmt.Sprintf("comm: lost rank %d: %v", e.Rank, e.Reason)
}

// Unwrap makes errors.Is(err, ErrPeerLost) true.
func (e *PeerError) Unwrap() []error { return []error{ErrPeerLost, e.Reason} }

// withLimitKnob adds to a frame's wire.ErrTooLarge what sets the limit it
// broke; other errors are returned as they are.
func withLimitKnob(err error) error {
	if !errors.Is(err, wire.ErrTooLarge) {
		return err
	}
	return fmt.Errorf("%w (messages: Config.MaxMessage, PMRUN_MAX_MESSAGE; frames: Config.EagerLimit, ShmEagerLimit, ShmEagerPoint, ChunkSize, PMRUN_EAGER_LIMIT, PMRUN_SHM_EAGER_LIMIT, PMRUN_SHM_EAGER_POINT, PMRUN_CHUNK_SIZE)", err)
}
