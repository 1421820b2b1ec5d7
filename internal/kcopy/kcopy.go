// Package kcopy tells whether this machine's kernel copies memory between
// processes slowly, against the vector copies of user code: the choice
// between one copy made by the kernel (process_vm_readv) and two made by
// the ranks themselves (a ring, the shared collective area) hangs on it.
package kcopy

import (
	"io"
	"os"
	"strings"
	"sync"
)

// Slow reports whether the CPU is AMD's (or Hygon's, built on it), whose
// string moves make the kernel's copies run at a fraction of what user
// code's vector copies reach: on a 2-core EPYC 7xx3 (Zen 3) VM a
// process_vm_readv of 1 MiB took 139-181 us where Go's copy takes 31 (see
// comm/direct.go). Every process of a machine gets the same answer.
var Slow = sync.OnceValue(func() bool {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 4096) // the first processor's lines name the vendor
	n, _ := io.ReadFull(f, head)
	return slowVendor(string(head[:n]))
})

// slowVendor reports whether cpuinfo, the text of /proc/cpuinfo, names a
// vendor whose kernel copies are slow.
func slowVendor(cpuinfo string) bool {
	for line := range strings.Lines(cpuinfo) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "vendor_id" {
			v = strings.TrimSpace(v)
			return v == "AuthenticAMD" || v == "HygonGenuine"
		}
	}
	return false
}
