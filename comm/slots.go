package comm

import (
	"fmt"
	"math"
	"os"

	"github.com/pmrun/pmrun/internal/commx"
	"github.com/pmrun/pmrun/internal/shm"
)

// Small collectives on one node go through a shared area instead of messages
// (see package internal/shm). The area belongs to a communicator; the
// collective algorithms reach it through internal/commx, which this file
// fills in.

func init() {
	commx.Register(
		func(c any, agree func(bool) bool) *shm.Slots { return c.(*Comm).sharedSlots(agree) },
		func(c any) *shm.Slots { return c.(*Comm).mappedSlots() },
		func(c any) bool { return c.(*Comm).hasSlots() },
	)
	commx.RegisterSockets(func(c any) bool { return c.(*Comm).sockets() })
	commx.RegisterDirect(func(c any) int { return c.(*Comm).directMax() })
}

// directMax is commx.DirectMax: the largest message c's ranks copy straight
// from each other's memory (see Config.ShmDirect), when they share a node's
// memory and do not go through sockets.
func (c *Comm) directMax() int {
	e := c.e
	if c.size < 2 || e.addrs == nil || c.nodes > 1 || !e.cfg.SharedMemory || !e.cfg.ShmDirect {
		return 0
	}
	if e.cfg.ShmDirectMax == 0 {
		return math.MaxInt
	}
	return e.cfg.ShmDirectMax
}

// sockets reports whether c's ranks exchange messages through sockets (see
// commx.Sockets): several nodes, or shared memory off in a launched job. An
// in-process world copies between goroutines and counts as one node.
func (c *Comm) sockets() bool {
	e := c.e
	return c.size > 1 && e.addrs != nil && (c.nodes > 1 || !e.cfg.SharedMemory)
}

// sharedSlots returns c's shared area for small collectives, mapping it on
// first use, or nil when c has none (see commx.Slots).
//
// Mapping needs no messages: each member opens the file by a name that the
// job id, the context id and the first member's world rank make unique, and
// the last one to map it removes the name. But a member may fail to map it
// (a full /dev/shm) where others succeed, so the first call passes whether
// this member did to agree, a collective on c that returns whether every
// member did. If not, all unmap it and c keeps to messages.
func (c *Comm) sharedSlots(agree func(mapped bool) bool) *shm.Slots {
	if !c.hasSlots() {
		return nil
	}
	c.slotsOnce.Do(func() {
		s, err := shm.OpenSlots(slotsName(c), c.slotsMember())
		if err != nil {
			c.e.debugf("%v; collectives on this communicator keep to messages", err)
		}
		if !agree(err == nil) {
			s.Close()
			os.Remove(slotsName(c)) // no member will open it now
			c.slotsOff.Store(true)
			return
		}
		c.slots = s
		c.slotsMapped.Store(s)
	})
	return c.slots
}

// mappedSlots returns c's shared area once sharedSlots has mapped it and the
// members agreed (see commx.Mapped), else nil.
func (c *Comm) mappedSlots() *shm.Slots {
	if !c.hasSlots() {
		return nil
	}
	return c.slotsMapped.Load()
}

// hasSlots reports whether c has, or may still map, a shared area.
func (c *Comm) hasSlots() bool {
	e := c.e
	return c.size > 1 && c.nodes == 1 && e.cfg.SharedMemory && e.addrs != nil && e.job != "" &&
		!c.closed.Load() && !c.slotsOff.Load()
}

func slotsName(c *Comm) string {
	return fmt.Sprintf("%s/pmrun-%s-coll-%d-%d", shm.Dir, c.e.job, c.cid, c.group[0])
}

// slotsMember is what c's shared area needs of c.
func (c *Comm) slotsMember() shm.Member {
	e := c.e
	return shm.Member{
		Rank: c.rank, Size: c.size,
		Spin: e.cfg.Spin, SpinYield: e.cfg.SpinYield,
		Yield: e.yield, Stalled: e.stepQueued,
		Closed: func() error {
			if c.closed.Load() {
				return ErrClosed
			}
			return nil
		},
		Gone: func(r int, left bool) error {
			e.mu.Lock()
			err := e.peerGone(c.group[r])
			e.mu.Unlock()
			if err == nil && left {
				err = &PeerError{Rank: c.group[r], Reason: errLeft}
			}
			return err
		},
	}
}
