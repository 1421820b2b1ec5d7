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

// TestPostedQueueOrder checks the posted receives against a flat list: a
// message takes the oldest posted receive that matches it, whether that is
// the front (windows of receives, matched in order) or any other, and
// removals and re-posts keep the order; a window matched in order reuses its
// array.
func TestPostedQueueOrder(t *testing.T) {
	q := &matchQueue{}
	var ref []*Request
	post := func(src, tag int) {
		r := &Request{src: src, tag: tag}
		q.post(r)
		ref = append(ref, r)
	}
	match := func(src, tag int) {
		t.Helper()
		want := -1
		for i, r := range ref {
			if matches(r.src, r.tag, src, tag) {
				want = i
				break
			}
		}
		got := q.takePosted(src, tag)
		switch {
		case want < 0 && got != nil:
			t.Fatalf("message (%d, %d) took a receive, want none", src, tag)
		case want >= 0 && got != ref[want]:
			t.Fatalf("message (%d, %d) took %p, want the receive posted %dth (%p)", src, tag, got, want, ref[want])
		}
		if want >= 0 {
			ref = append(ref[:want], ref[want+1:]...)
		}
	}
	for round := range 50 {
		for i := range 64 { // a window, matched in order
			post(1, i)
		}
		for i := range 64 {
			match(1, i)
		}
		for i := range 20 { // others, matched out of order, some wildcards
			src := AnySource
			if i%3 != 0 {
				src = i % 4
			}
			post(src, (i+round)%5)
		}
		for i := range 25 {
			match(i%4, (i*3)%5)
		}
		if r := len(ref); r > 0 && round%7 == 0 { // a withdrawn receive
			if !q.removePosted(ref[r/2]) {
				t.Fatal("removePosted did not find a posted receive")
			}
			ref = append(ref[:r/2], ref[r/2+1:]...)
		}
	}
	if len(q.posted) != len(ref) {
		t.Fatalf("%d receives posted, want %d", len(q.posted), len(ref))
	}
	for len(ref) > 0 {
		match(ref[0].src, max(ref[0].tag, 0))
	}
	// A window matched in order: its array is reused, not grown.
	for range 64 {
		post(2, 0)
	}
	base := &q.base[:1][0]
	for range 10 {
		for range 64 {
			match(2, 0)
		}
		for range 64 {
			post(2, 0)
		}
	}
	if &q.base[:1][0] != base {
		t.Fatal("windows of receives matched in order moved the queue to a new array")
	}
}
