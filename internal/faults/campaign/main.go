// Command campaign runs pmrun's fault-injection campaign: RUNS runs drawn
// from SEED (run i from SEED+i), each a random workload at a random size
// with one random fault, and prints one line a run and then the table of
// outcomes by fault kind (see docs/faults.md). It exits 1 when a run ended
// wrongly (hang, late, unnamed, wrong answer) or left anything behind.
//
//	go run ./internal/faults/campaign -bin bin/pmrun -seed 1 -runs 500
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pmrun/pmrun/internal/faults"
)

func main() {
	bin := flag.String("bin", "bin/pmrun", "the pmrun launcher")
	seed := flag.Int64("seed", 1, "seed of the first run")
	runs := flag.Int("runs", 500, "number of runs")
	dockerMode := flag.String("docker", "auto", "draw --docker runs: auto (when an engine answers), on or off")
	python := flag.String("python", "python3", "interpreter of the task workload")
	place := flag.String("place", "", "only the runs drawn for this place (local, agents, docker, tasks); the other seeds are skipped")
	flag.Parse()
	if *runs < 1 {
		fmt.Fprintln(os.Stderr, "campaign: -runs must be at least 1")
		os.Exit(2)
	}
	useDocker := false
	switch *dockerMode {
	case "on":
		useDocker = true
	case "off":
	case "auto":
		useDocker = exec.Command("docker", "version").Run() == nil
		if !useDocker {
			fmt.Println("campaign: no Docker engine answers; the --docker runs are left out")
		}
	default:
		fmt.Fprintf(os.Stderr, "campaign: -docker %q: want auto, on or off\n", *dockerMode)
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "pmrun-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "campaign:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	h, err := faults.New(faults.Config{Bin: *bin, Python: *python, Docker: useDocker, Dir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "campaign:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var results []faults.Result
	bad := 0
	began := time.Now()
	for i, s := 0, *seed; i < *runs && ctx.Err() == nil; s++ {
		p := faults.Plan(s, useDocker)
		if *place != "" && p.Place != *place {
			if s-*seed > 1000*int64(*runs) {
				fmt.Fprintf(os.Stderr, "campaign: no run is drawn for -place %q\n", *place)
				os.Exit(2)
			}
			continue
		}
		i++
		r := h.Run(ctx, p)
		if ctx.Err() != nil {
			break // interrupted: the run counts for nothing
		}
		results = append(results, r)
		if !r.Pass() {
			bad++
		}
		fmt.Printf("%4d %s\n", i, faults.Line(r))
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("\n%d runs from seed %d in %v, %d findings (load average at the end: %s)\n\n",
		len(results), *seed, time.Since(began).Round(time.Second), bad, strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "))
	faults.Table(os.Stdout, results)
	if bad > 0 {
		os.RemoveAll(dir)
		os.Exit(1)
	}
}
