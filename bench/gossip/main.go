// Command gossip measures pmrun's node agents at scale on one machine: it
// starts -n agents on loopback in this process, each joining one started
// before it, and reports how long the cluster takes to converge (every agent
// sees every other alive), to declare a crashed agent dead everywhere, and to
// see a graceful leave everywhere.
//
//	go run ./bench/gossip -n 64
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"time"

	"github.com/pmrun/pmrun/node"
)

func main() {
	n := flag.Int("n", 64, "agents")
	limit := flag.Duration("limit", 2*time.Minute, "give up on a phase after this long")
	flag.Parse()
	quiet := log.New(io.Discard, "", 0).Printf
	work, err := os.MkdirTemp("", "pmrun-gossip-bench-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(work)

	agents := make([]*node.Agent, 0, *n)
	defer func() {
		for _, a := range agents {
			a.Close()
		}
	}()
	start := time.Now()
	for i := range *n {
		cfg := node.AgentConfig{Name: fmt.Sprintf("a%03d", i), Bind: "127.0.0.1:0", Cores: 1, WorkDir: work, Logf: quiet}
		if i > 0 {
			cfg.Join = []string{agents[rand.IntN(i)].GossipAddr()}
		}
		a, err := node.StartAgent(cfg)
		if err != nil {
			log.Fatalf("agent %d: %v", i, err)
		}
		agents = append(agents, a)
	}
	started := time.Since(start)
	converge := wait(*limit, func() bool {
		for _, a := range agents {
			if count(a, "alive") != *n {
				return false
			}
		}
		return true
	})
	fmt.Printf("BENCH gossip_start n=%d value=%.1f unit=ms\n", *n, ms(started))
	fmt.Printf("BENCH gossip_converge n=%d value=%.1f unit=ms\n", *n, ms(converge))

	victim := agents[*n/2]
	rest := append(append([]*node.Agent{}, agents[:*n/2]...), agents[*n/2+1:]...)
	victim.Close()
	detect := wait(*limit, func() bool {
		for _, a := range rest {
			if state(a, victim.Name()) != "dead" {
				return false
			}
		}
		return true
	})
	fmt.Printf("BENCH gossip_crash_detect_all n=%d value=%.1f unit=ms\n", *n, ms(detect))

	leaver := rest[len(rest)-1]
	rest = rest[:len(rest)-1]
	t0 := time.Now()
	leaver.Leave()
	wait(*limit, func() bool {
		for _, a := range rest {
			if state(a, leaver.Name()) != "left" {
				return false
			}
		}
		return true
	})
	fmt.Printf("BENCH gossip_leave_seen_all n=%d value=%.1f unit=ms\n", *n, ms(time.Since(t0)))
	agents = rest
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func count(a *node.Agent, st string) int {
	c := 0
	for _, m := range a.Members() {
		if m.State == st {
			c++
		}
	}
	return c
}

func state(a *node.Agent, name string) string {
	for _, m := range a.Members() {
		if m.Name == name {
			return m.State
		}
	}
	return ""
}

// wait polls cond every 10 ms and returns how long it took to hold.
func wait(limit time.Duration, cond func() bool) time.Duration {
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			log.Fatalf("gave up after %v", limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}
