package node

import (
	"cmp"
	"encoding/json"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// DefaultMaxMeta is the default bound of another node's gossip metadata:
// memberlist's own bound of what a node may advertise.
const DefaultMaxMeta = memberlist.MetaMaxSize

// Bounds of the counts a node advertises.
const (
	maxMetaCores  = 1 << 20
	maxMetaLabels = 64
)

// decodeMeta reads the metadata that a node gossips: at most max bytes
// (DefaultMaxMeta when max is 0) of JSON with a control port and counts in
// range. An error says what is wrong and names the limit's knob.
func decodeMeta(b []byte, max int) (meta, error) {
	max = cmp.Or(max, DefaultMaxMeta)
	if len(b) > max {
		return meta{}, fmt.Errorf("node: gossip metadata of %d bytes is over the limit of %d (AgentConfig.MaxMeta, pmrun node --max-meta)", len(b), max)
	}
	var md meta
	if err := json.Unmarshal(b, &md); err != nil {
		return meta{}, fmt.Errorf("node: malformed gossip metadata: %w", err)
	}
	switch {
	case md.Control < 1 || md.Control > 65535:
		return meta{}, fmt.Errorf("node: gossip metadata: control port %d", md.Control)
	case md.Cores < 0 || md.Cores > maxMetaCores:
		return meta{}, fmt.Errorf("node: gossip metadata: %d cores", md.Cores)
	case md.Workers < 0 || md.Workers > maxMetaCores || md.Busy < 0 || md.Busy > maxMetaCores || md.Idle < 0 || md.Idle > maxMetaCores:
		return meta{}, fmt.Errorf("node: gossip metadata: task workers %d, busy %d, idle %d", md.Workers, md.Busy, md.Idle)
	case len(md.Labels) > maxMetaLabels:
		return meta{}, fmt.Errorf("node: gossip metadata: %d labels", len(md.Labels))
	}
	return md, nil
}
