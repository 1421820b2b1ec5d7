package comm

import "github.com/pmrun/pmrun/internal/insight"

// HeldBytes is how many bytes of world rank w's eager messages c's engine
// holds unexpected; HeldLimit is the flow-control bound.
func HeldBytes(c *Comm, w int) int64 { return c.e.held[w].Load() }

var HeldLimit = int64(DefaultConfig().HeldLimit)

// ContextID is c's context id, which tags its traffic on the wire.
func ContextID(c *Comm) uint32 { return c.cid }

// Queues is how many contexts c's engine keeps a match queue for.
func Queues(c *Comm) int {
	c.e.mu.Lock()
	defer c.e.mu.Unlock()
	return len(c.e.queues)
}

// State is what c's rank is blocked in now.
func State(c *Comm) insight.State { return c.e.state() }

// Summary is what c's rank would send its launcher now (Config.Trace or
// Config.Report must be set).
func Summary(c *Comm) insight.Summary { return c.e.diag.ins.summary() }

// Later is how many requests c's engine holds for a goroutine to take over
// (laterQueue), and whether its timer is armed.
func Later(c *Comm) (int, bool) {
	q := &c.e.laterQ
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.reqs), q.armed
}
