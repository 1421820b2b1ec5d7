package kcopy

import "testing"

func TestSlowVendor(t *testing.T) {
	for _, tc := range []struct {
		cpuinfo string
		slow    bool
	}{
		{"processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n", true},
		{"processor\t: 0\nvendor_id\t: HygonGenuine\n", true},
		{"processor\t: 0\nvendor_id\t: GenuineIntel\n", false},
		{"processor\t: 0\nCPU implementer\t: 0x41\n", false}, // arm64: no vendor_id
		{"", false},
	} {
		if got := slowVendor(tc.cpuinfo); got != tc.slow {
			t.Errorf("slowVendor(%q) = %v, want %v", tc.cpuinfo, got, tc.slow)
		}
	}
	_ = Slow() // reads this machine's, whatever it is
}
