package shm

import (
	"bytes"
	"testing"
)

// TestCopyStream checks the streamed copy against copy at every alignment
// of its ends and lengths around its 64-byte blocks.
func TestCopyStream(t *testing.T) {
	src := make([]byte, 300<<10)
	for i := range src {
		src[i] = byte(i*7 + i>>8)
	}
	dst := make([]byte, len(src)+128)
	for _, n := range []int{0, 1, 63, 64, 65, 127, 128, 4095, 64<<10 - 1, 64<<10 + 13, 300<<10 - 70} {
		for _, do := range []int{0, 1, 7, 16, 33, 63} {
			for _, so := range []int{0, 5, 64} {
				if so+n > len(src) {
					continue
				}
				clear(dst)
				d := dst[do : do+n]
				if got := copyStream(d, src[so:so+n]); got != n {
					t.Fatalf("n %d, offsets %d/%d: copied %d", n, do, so, got)
				}
				if !bytes.Equal(d, src[so:so+n]) {
					t.Fatalf("n %d, offsets %d/%d: bytes differ", n, do, so)
				}
				if bytes.ContainsFunc(dst[:do], func(r rune) bool { return r != 0 }) || bytes.ContainsFunc(dst[do+n:], func(r rune) bool { return r != 0 }) {
					t.Fatalf("n %d, offsets %d/%d: wrote outside dst", n, do, so)
				}
			}
		}
	}
}

// TestCopierFar checks the Copier's states without the comparison with
// streamed copies: a slow plain copy makes the next ones streamed, every
// farBudget-th goes plain again, timed, and a fast one ends it.
func TestCopierFar(t *testing.T) {
	defer func(r float64, cmp bool) { FarRate, CompareStream = r, cmp }(FarRate, CompareStream)
	CompareStream = false
	src := bytes.Repeat([]byte{1, 2, 3}, farMin/3+1)
	dst := make([]byte, len(src))
	var c Copier
	FarRate = 1e12 // every timed plain copy is slow
	if c.Copy(dst[:farMin-1], src); c.Far() {
		t.Fatal("a copy below farMin was timed")
	}
	c.Copy(dst, src) // the first large copy
	if !c.Far() || !bytes.Equal(dst, src) {
		t.Fatalf("after a slow copy: far=%v, data ok=%v", c.Far(), bytes.Equal(dst, src))
	}
	FarRate = 0 // every timed plain copy is fast: only the farBudget-th ends it
	for i := 2; i < farBudget; i++ {
		clear(dst)
		c.Copy(dst, src)
		if !c.Far() || !bytes.Equal(dst, src) {
			t.Fatalf("streamed copy %d: far=%v, data ok=%v", i, c.Far(), bytes.Equal(dst, src))
		}
	}
	c.Copy(dst, src)
	if c.Far() {
		t.Fatalf("the plain copy after %d streamed ones, fast, left far set", farBudget-2)
	}
}

// TestCopierCompare checks the choice between plain and streamed copies
// once a plain one was slow: streaming only while its last copy was the
// faster, and before any was timed.
func TestCopierCompare(t *testing.T) {
	for _, tc := range []struct {
		slow      bool
		plain, nt uint64
		want      bool
	}{
		{false, 100, 0, false}, {false, 100, 200, false},
		{true, 100, 0, true}, {true, 100, 200, true}, {true, 100, 50, false}, {true, 100, 100, false},
	} {
		var c Copier
		c.slow.Store(tc.slow)
		c.plain.Store(tc.plain)
		c.nt.Store(tc.nt)
		if c.decide(); c.Far() != tc.want {
			t.Errorf("slow %v, plain %d, streamed %d bytes/us: streams %v, want %v", tc.slow, tc.plain, tc.nt, c.Far(), tc.want)
		}
	}
	// Copies keep the data whichever way they go.
	src := bytes.Repeat([]byte{9, 8, 7, 6, 5}, farMin/5+100)
	dst := make([]byte, len(src))
	var c Copier
	for i := range 3 * farBudget {
		clear(dst)
		if c.Copy(dst, src); !bytes.Equal(dst, src) {
			t.Fatalf("copy %d (far %v): bytes differ", i, c.Far())
		}
	}
}
