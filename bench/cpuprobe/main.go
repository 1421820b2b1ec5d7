// Command cpuprobe tells how far apart two CPUs are: it bounces a cache line
// between a thread pinned to each and prints the round trip, then times a
// copy of 1 MiB that one CPU wrote, made on the other. On a VM the host may
// move the guest's CPUs between cores that share a cache and cores on
// different dies; the round trip shows which placement holds (see
// docs/benchmarks.md, "Two CPUs near or far").
//
//	go run ./bench/cpuprobe [-a 0] [-b 1]
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

func pin(cpu int) error {
	runtime.LockOSThread()
	var s unix.CPUSet
	s.Set(cpu)
	return unix.SchedSetaffinity(0, &s)
}

func main() {
	a := flag.Int("a", 0, "the first CPU")
	b := flag.Int("b", 1, "the second CPU")
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := pin(*a); err != nil {
		fmt.Fprintf(os.Stderr, "cpuprobe: CPU %d: %v\n", *a, err)
		os.Exit(1)
	}
	const bounces = 200000
	var line atomic.Int64
	buf, dst := make([]byte, 1<<20), make([]byte, 1<<20)
	const copies = 100
	errc := make(chan error, 1)
	go func() {
		if err := pin(*b); err != nil {
			line.Store(-1)
			errc <- err
			return
		}
		for i := int64(1); i <= bounces+copies; i++ {
			for line.Load() != 2*i-1 {
			}
			if i > bounces {
				for j := range buf {
					buf[j] = byte(i)
				}
			}
			line.Store(2 * i)
		}
		errc <- nil
	}()
	var round, cp time.Duration
	t0 := time.Now()
	for i := int64(1); i <= bounces+copies; i++ {
		if i == bounces+1 {
			round = time.Since(t0) / bounces
		}
		line.Store(2*i - 1)
		for v := line.Load(); v != 2*i; v = line.Load() {
			if v < 0 {
				break
			}
		}
		if line.Load() < 0 {
			break
		}
		if i > bounces {
			t := time.Now()
			copy(dst, buf)
			cp += time.Since(t)
		}
	}
	if err := <-errc; err != nil {
		fmt.Fprintf(os.Stderr, "cpuprobe: CPU %d: %v\n", *b, err)
		os.Exit(1)
	}
	fmt.Printf("cpus %d,%d: cache line round trip %v, copy of 1 MiB written by the other %v\n", *a, *b, round, cp/copies)
}
