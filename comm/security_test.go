package comm

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/pmrun/pmrun/internal/wire"
	"github.com/pmrun/pmrun/internal/wire/wiretest"
)

// TestPeerPortRefusesStrangers attacks a rank's peer port without the job
// secret: garbage, a handshake with a wrong secret, a replayed handshake
// (recorded from a dialer that knew the secret), and a well-formed hello
// that never proves anything. Each is refused (no accepting byte), each
// refusal is logged, and the ranks still exchange messages afterwards.
func TestPeerPortRefusesStrangers(t *testing.T) {
	secret := bytes.Repeat([]byte{0x5a}, 32)
	cs, logs := loggedWorld(t, []string{"a", "b"}, secret, nil, DefaultConfig())
	addr := cs[0].PeerAddr(1)
	hello := append([]byte("PMRN\x01\x01\x00\x00\x00\x00"), make([]byte, 16)...)
	for name, got := range map[string]wiretest.Outcome{
		"garbage":    wiretest.Garbage(t, addr, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")),
		"hello only": wiretest.Garbage(t, addr, append(hello, make([]byte, 32)...)),
		"wrong key":  wiretest.WrongKey(t, addr, bytes.Repeat([]byte{0x5b}, 32), wire.RolePeer, 0),
		// Recorded as rank 1 itself, which the rank refuses once the
		// handshake is done: the recording disturbs nothing.
		"replay": wiretest.Replay(t, addr, secret, wire.RolePeer, 1),
	} {
		if got.Accepted {
			t.Errorf("%s: accepted", name)
		}
		if (name == "replay" || name == "hello only") && len(got.Answer) != 48 {
			t.Errorf("%s: answered %d bytes, want the 48 of the challenge (refused at the proof)", name, len(got.Answer))
		}
		if name == "wrong key" && !errors.Is(got.Err, wire.ErrHandshake) {
			t.Errorf("wrong key: %v, want wire.ErrHandshake", got.Err)
		}
	}
	exchangeAll(t, cs)
	if n := strings.Count(logs(), "refused connection"); n < 5 {
		t.Errorf("%d refusals logged, want 5 (four attacks and the recorded handshake):\n%s", n, logs())
	}
}
