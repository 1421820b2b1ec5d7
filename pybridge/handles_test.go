package main

import "testing"

func TestSlotsHandles(t *testing.T) {
	s := newSlots[string]()
	a, b := s.put("a"), s.put("b")
	if a <= 0 || b <= 0 || a == b {
		t.Fatalf("handles %d and %d: want two distinct positive ones", a, b)
	}
	if a >= 1<<30 || b >= 1<<30 {
		t.Fatalf("handles %d and %d: want one-digit Python ints (< 2^30)", a, b)
	}
	if v, ok := s.get(a); !ok || v != "a" {
		t.Fatalf("get(a) = %q, %v", v, ok)
	}
	if v, ok := s.take(a); !ok || v != "a" {
		t.Fatalf("take(a) = %q, %v", v, ok)
	}
	if _, ok := s.take(a); ok {
		t.Fatal("a second take of a handle found a value")
	}
	c := s.put("c") // reuses a's slot
	if c == a {
		t.Fatalf("a reused slot gave the stale handle %d again", a)
	}
	if _, ok := s.get(a); ok {
		t.Fatal("the stale handle found the value its slot holds now")
	}
	out := make([]string, 3)
	if _, ok := s.getAll([]int64{c, 0, b}, out); !ok || out[0] != "c" || out[1] != "" || out[2] != "b" {
		t.Fatalf("getAll = %q, %v", out, ok)
	}
	if h, ok := s.getAll([]int64{b, a}, out); ok || h != a {
		t.Fatalf("getAll with a stale handle: reported %d, %v; want %d, false", h, ok, a)
	}
	for _, h := range []int64{0, -1, 1, 1 << 40} {
		if _, ok := s.get(h); ok {
			t.Fatalf("get(%d) found a value", h)
		}
	}
}

// A handle set apart (put with the zero value, as pm_req_reserve does) takes
// its value later; one taken since takes none.
func TestSlotsFill(t *testing.T) {
	s := newSlots[*int]()
	h := s.put(nil)
	if v, ok := s.get(h); !ok || v != nil {
		t.Fatalf("reserved handle: %v %v, want nil true", v, ok)
	}
	x := 7
	s.fill(h, &x)
	if v, ok := s.get(h); !ok || v != &x {
		t.Fatalf("filled handle: %v %v", v, ok)
	}
	s.take(h)
	s.fill(h, &x)
	if _, ok := s.get(h); ok {
		t.Fatal("a taken handle was filled")
	}
}
