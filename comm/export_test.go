package comm

import "context"

// NewTCPWorldForTest exposes newTCPWorld to the tests, which run ranks as
// goroutines connected by real TCP connections.
func NewTCPWorldForTest(ctx context.Context, cfg *Config, job string, rank, size int, secret []byte, rdvAddr, node string) (*Comm, error) {
	if cfg == nil {
		cfg = DefaultConfig()
	}
	return newTCPWorld(ctx, cfg, job, rank, size, secret, rdvAddr, node, "127.0.0.1")
}

// HeldBytes is how many bytes of world rank w's eager messages c's engine
// holds unexpected; HeldLimit is the flow-control bound.
func HeldBytes(c *Comm, w int) int64 { return c.e.held[w].Load() }

const HeldLimit = heldLimit
