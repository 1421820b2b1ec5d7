// Package units parses the byte counts that pmrun's environment variables,
// flags and benchmarks accept: a decimal number with an optional k or m suffix
// (KiB, MiB; either case).
package units

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseSize reads one byte count such as "8", "64k", "4M" or "8g".
func ParseSize(s string) (int, error) {
	f, shift := s, 0
	switch {
	case strings.HasSuffix(f, "k"), strings.HasSuffix(f, "K"):
		shift, f = 10, f[:len(f)-1]
	case strings.HasSuffix(f, "m"), strings.HasSuffix(f, "M"):
		shift, f = 20, f[:len(f)-1]
	case strings.HasSuffix(f, "g"), strings.HasSuffix(f, "G"):
		shift, f = 30, f[:len(f)-1]
	}
	n, err := strconv.Atoi(f)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("bad size %q: want a byte count such as 512, 64k, 4m or 8g", s)
	}
	return n << shift, nil
}

// ParseSizes reads a comma-separated list of byte counts; "" yields nil.
func ParseSizes(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for field := range strings.SplitSeq(s, ",") {
		n, err := ParseSize(field)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}
