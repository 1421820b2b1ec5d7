package comm

import "testing"

// TestMatchQueueOrder checks the unexpected-message index against the rules a
// flat list gives by construction: an exact receive takes the oldest message
// of its (source, tag); a wildcard receive takes the oldest that matches
// (wildcard tags never match reserved tags, below AnyTag); and a probe leaves
// the message queued.
func TestMatchQueueOrder(t *testing.T) {
	q := &matchQueue{}
	type m struct{ src, tag int }
	// Many tags from a few sources, interleaved, with repeats.
	var in []m
	for i := range 3000 {
		in = append(in, m{i % 3, -(i % 500) - 2}, m{i % 3, i % 7})
	}
	for i, x := range in {
		q.addUnexpected(&inMsg{src: x.src, tag: x.tag, size: i})
	}
	alive := make([]bool, len(in))
	for i := range alive {
		alive[i] = true
	}
	// A reference: the oldest live message matching src/tag.
	ref := func(src, tag int) int {
		for i, x := range in {
			if alive[i] && matches(src, tag, x.src, x.tag) {
				return i
			}
		}
		return -1
	}
	take := func(src, tag int, remove bool) {
		t.Helper()
		want := ref(src, tag)
		got := q.takeUnexpected(src, tag, remove)
		switch {
		case want < 0 && got != nil:
			t.Fatalf("take(%d, %d): got message %d, want none", src, tag, got.size)
		case want >= 0 && (got == nil || got.size != want):
			t.Fatalf("take(%d, %d): got %v, want message %d", src, tag, got, want)
		}
		if remove && want >= 0 {
			alive[want] = false
		}
	}
	for i := range 2000 {
		switch i % 5 {
		case 0:
			take(AnySource, AnyTag, true)
		case 1:
			take(i%3, AnyTag, i%2 == 0)
		case 2:
			take(AnySource, i%7, true)
		default:
			take(i%3, -(i%500)-2, true)
		}
	}
	// Drain exactly, source by source and tag by tag, then nothing is left.
	for i, x := range in {
		if alive[i] {
			take(x.src, x.tag, true)
		}
	}
	if q.oldest != nil || q.newest != nil || len(q.byKey) != 0 {
		t.Fatalf("queue not empty after draining: oldest %v, %d keys", q.oldest, len(q.byKey))
	}
	take(AnySource, AnyTag, true)
}
