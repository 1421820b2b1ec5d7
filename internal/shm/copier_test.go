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

// TestCopierFar checks the Copier's states: a slow plain copy makes the
// next ones streamed, every farBudget-th is timed again, a fast one ends it.
func TestCopierFar(t *testing.T) {
	defer func(r float64) { FarRate = r }(FarRate)
	src := bytes.Repeat([]byte{1, 2, 3}, farMin/3+1)
	dst := make([]byte, len(src))
	var c Copier
	FarRate = 1e12 // every timed copy is slow
	if c.Copy(dst[:farMin-1], src); c.Far() {
		t.Fatal("a copy below farMin was timed")
	}
	c.Copy(dst, src)
	if !c.Far() || !bytes.Equal(dst, src) {
		t.Fatalf("after a slow copy: far=%v, data ok=%v", c.Far(), bytes.Equal(dst, src))
	}
	FarRate = 0 // every timed copy is fast: only the farBudget-th ends it
	for i := 1; i < farBudget; i++ {
		clear(dst)
		c.Copy(dst, src)
		if !c.Far() || !bytes.Equal(dst, src) {
			t.Fatalf("streamed copy %d: far=%v, data ok=%v", i, c.Far(), bytes.Equal(dst, src))
		}
	}
	c.Copy(dst, src)
	if c.Far() {
		t.Fatalf("the timed copy after %d streamed ones, fast, left far set", farBudget-1)
	}
}
