package units

import (
	"slices"
	"testing"
)

func TestParseSize(t *testing.T) {
	good := map[string]int{"0": 0, "8": 8, "64k": 64 << 10, "64K": 64 << 10, "4m": 4 << 20, "4M": 4 << 20, "8g": 8 << 30, "1G": 1 << 30}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "k", "-1", "1t", "1.5k", "99999999999999999999", "9000000000000m"} {
		if n, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, n)
		}
	}
}

func TestParseSizes(t *testing.T) {
	got, err := ParseSizes("8,1k,1m")
	if err != nil || !slices.Equal(got, []int{8, 1 << 10, 1 << 20}) {
		t.Fatalf("ParseSizes = %v, %v", got, err)
	}
	if got, err := ParseSizes(""); got != nil || err != nil {
		t.Fatalf("ParseSizes(\"\") = %v, %v", got, err)
	}
	if _, err := ParseSizes("8,,1k"); err == nil {
		t.Fatal("empty field accepted")
	}
}
