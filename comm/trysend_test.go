package comm

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// TestTrySendNow: a message goes at once through shared memory and to the
// rank itself; nothing goes (and nothing is lost) while the ring is full,
// nor over a socket, where TrySend and Send take it.
func TestTrySendNow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := DefaultConfig()
	cfg.ShmRing = 64 << 10
	cs := netWorld(t, 2, true, cfg)
	if sent, err := cs[0].TrySendNow(ctx, 0, 9, []byte("self")); !sent || err != nil {
		t.Fatalf("to itself: sent %v, %v", sent, err)
	}
	if got, _, err := cs[0].Recv(ctx, 0, 9); err != nil || string(got) != "self" {
		t.Fatalf("to itself: received %q, %v", got, err)
	}
	// The link comes up with a first message (TrySendNow makes none).
	if err := cs[0].Send(ctx, 1, 8, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cs[1].Recv(ctx, 0, 8); err != nil {
		t.Fatal(err)
	}
	msg := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 4<<10) }
	n := 0
	for ; n < 64; n++ { // the ring holds about 15 of them
		sent, err := cs[0].TrySendNow(ctx, 1, 7, msg(n))
		if err != nil {
			t.Fatal(err)
		}
		if !sent {
			break
		}
	}
	if n == 0 || n == 64 {
		t.Fatalf("%d messages of 4 KiB went at once into a ring of 64 KiB", n)
	}
	if err := cs[0].Send(ctx, 1, 7, msg(n)); err != nil { // waits for room
		t.Fatal(err)
	}
	for i := 0; i <= n; i++ {
		if got, _, err := cs[1].Recv(ctx, 0, 7); err != nil || !bytes.Equal(got, msg(i)) {
			t.Fatalf("message %d of %d: %d bytes, %v", i, n+1, len(got), err)
		}
	}

	tcp := netWorld(t, 2, false, DefaultConfig())
	if err := tcp[0].Send(ctx, 1, 8, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tcp[1].Recv(ctx, 0, 8); err != nil {
		t.Fatal(err)
	}
	if sent, err := tcp[0].TrySendNow(ctx, 1, 3, []byte("x")); sent || err != nil {
		t.Fatalf("over a socket: sent %v, %v", sent, err)
	}
	if sent, err := tcp[0].TrySend(ctx, 1, 3, []byte("y")); !sent || err != nil {
		t.Fatalf("TrySend over a socket: sent %v, %v", sent, err)
	}
	if got, _, err := tcp[1].Recv(ctx, 0, 3); err != nil || string(got) != "y" {
		t.Fatalf("over a socket: received %q, %v, want the one message TrySend sent", got, err)
	}
}
