package comm

import "context"

// NewTCPWorldForTest exposes newTCPWorld to the tests, which run ranks as
// goroutines connected by real TCP connections.
func NewTCPWorldForTest(ctx context.Context, cfg *Config, rank, size int, secret []byte, rdvAddr string) (*Comm, error) {
	if cfg == nil {
		cfg = DefaultConfig()
	}
	return newTCPWorld(ctx, cfg, rank, size, secret, rdvAddr, "test", "127.0.0.1")
}
