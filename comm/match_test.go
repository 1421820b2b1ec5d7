package comm

import (
	"fmt"
	"slices"
	"testing"
)

// TestMatchQueueOrder checks the unexpected messages against the rules a
// flat list gives by construction: an exact receive takes the oldest message
// of its (source, tag); a wildcard receive takes the oldest that matches
// (wildcard tags never match reserved tags, below AnyTag); and a probe leaves
// the message queued. It runs with thousands queued (indexed), with a few
// (scanned), and with messages coming and going around indexMin, so that
// the index is made and dropped on the way; a revoked announcement leaves
// from the middle of its (source, tag).
func TestMatchQueueOrder(t *testing.T) {
	type m struct{ src, tag int }
	var in []m
	for i := range 3000 { // many tags from a few sources, interleaved, with repeats
		in = append(in, m{i % 3, -(i % 500) - 2}, m{i % 3, i % 7})
	}
	for _, tc := range []struct {
		name        string
		first, each int // messages queued at the start, and after every take
	}{
		{"indexed", len(in), 0},
		{"scanned", indexMin / 2, 0},
		{"around the index", 0, -1}, // -1: 25 turns adding 2 each, 25 taking 3 more, ...
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := &matchQueue{}
			alive := make([]bool, len(in))
			next := 0
			add := func(k int) {
				for ; k > 0 && next < len(in); k-- {
					q.addUnexpected(&inMsg{src: in[next].src, tag: in[next].tag, size: next})
					alive[next] = true
					next++
				}
			}
			// A reference: the oldest live message matching src/tag.
			ref := func(src, tag int) int {
				for i, x := range in[:next] {
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
				if has := q.takeUnexpected(src, tag, false) != nil; src != AnySource && tag != AnyTag && has != (ref(src, tag) >= 0) {
					t.Fatalf("a probe of (%d, %d) found a message: %v, after a take", src, tag, has)
				}
			}
			// revoke removes the newest live message of a (source, tag)
			// that has an older one, as onRevoke may.
			revoke := func() {
				for i := next - 1; i >= 0; i-- {
					if alive[i] {
						if o := ref(in[i].src, in[i].tag); o >= 0 && o != i {
							for x := q.oldest; x != nil; x = x.next {
								if x.size == i {
									q.remove(x)
									alive[i] = false
									return
								}
							}
							t.Fatalf("message %d is not queued", i)
						}
					}
				}
			}
			add(tc.first)
			indexed, dropped := false, 0
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
				if i%9 == 0 {
					revoke()
				}
				switch {
				case tc.each >= 0:
					add(tc.each + i%3)
				case i/25%2 == 0:
					add(2)
				default: // the queue empties: the index goes
					for range 3 { // the oldest, by its own source and tag (AnyTag leaves the reserved ones)
						if j := slices.Index(alive[:next], true); j >= 0 {
							take(in[j].src, in[j].tag, true)
						}
					}
				}
				if q.queued > indexMin && !q.indexed {
					t.Fatalf("%d messages queued without the index", q.queued)
				}
				if q.indexed {
					indexed = true
				} else if indexed {
					indexed, dropped = false, dropped+1
				}
			}
			if tc.each < 0 && dropped < 10 {
				t.Fatalf("the index was dropped %d times, want one for each time the queue emptied", dropped)
			}
			// Drain exactly, source by source and tag by tag, then nothing is left.
			for i, x := range in[:next] {
				if alive[i] {
					take(x.src, x.tag, true)
				}
			}
			if q.oldest != nil || q.newest != nil || q.queued != 0 || q.indexed || len(q.byKey) != 0 {
				t.Fatalf("queue not empty after draining: oldest %v, %d queued, index %v", q.oldest, q.queued, q.byKey)
			}
			take(AnySource, AnyTag, true)
		})
	}
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

// BenchmarkUnexpected queues messages of a tag each, as a rooted
// collective's root finds them with its senders calls ahead, and takes them
// by exact receives: depth of them at a time, below and above indexMin.
func BenchmarkUnexpected(b *testing.B) {
	for _, depth := range []int{4, 64} {
		b.Run(fmt.Sprintf("depth=%d", depth), func(b *testing.B) {
			q := &matchQueue{}
			msgs := make([]inMsg, depth)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				for j := range msgs {
					msgs[j] = inMsg{src: 1, tag: i*depth + j}
					q.addUnexpected(&msgs[j])
				}
				for j := range msgs {
					if q.takeUnexpected(1, i*depth+j, true) != &msgs[j] {
						b.Fatal("took the wrong message")
					}
				}
			}
		})
	}
}
