// Command behave does what its first argument says, to exercise the launcher:
// env NAME (print a variable), stdin (rank 0 echoes its input), sleep (sleep
// until killed, reporting signals), abort N (rank 2 calls comm's Abort),
// exit N (rank 1 exits N while the others receive from it), kill (rank 1 is
// killed by SIGKILL while the others receive from it), leave N (rank 1 closes
// its world, then exits N once the others are gone; they call Abort when their
// receive from it fails), wait (every rank receives from any source), hold
// DIR [chatty] (write DIR/RANK.pid holding "PID JOB", then receive from the
// other of two ranks, which receives too: forever; with chatty, print lines
// meanwhile), place (print the rank's node, local rank and size, threads,
// GOMAXPROCS and allowed CPUs, then pass its rank around a ring).
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/pmrun/pmrun/comm"
)

func main() {
	rank := os.Getenv("PMRUN_RANK")
	switch os.Args[1] {
	case "env":
		fmt.Printf("rank %s: %s=%q\n", rank, os.Args[2], os.Getenv(os.Args[2]))
	case "stdin":
		sc := bufio.NewScanner(os.Stdin)
		n := 0
		for sc.Scan() {
			fmt.Printf("rank %s read %q\n", rank, sc.Text())
			n++
		}
		fmt.Printf("rank %s: %d lines\n", rank, n)
	case "sleep":
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
		fmt.Printf("rank %s sleeping\n", rank)
		select {
		case s := <-sigs:
			fmt.Printf("rank %s got %v\n", rank, s)
			os.Exit(0)
		case <-time.After(time.Minute):
		}
	case "hold":
		c, err := comm.World()
		if err != nil {
			panic(err)
		}
		if len(os.Args) > 3 {
			go func() {
				for i := 0; ; i++ {
					fmt.Printf("rank %s line %d\n", rank, i)
					time.Sleep(time.Millisecond)
				}
			}()
		}
		pid := fmt.Sprintf("%d %s", os.Getpid(), os.Getenv("PMRUN_JOB"))
		if err := os.WriteFile(filepath.Join(os.Args[2], rank+".pid"), []byte(pid), 0o600); err != nil {
			panic(err)
		}
		_, _, err = c.Recv(context.Background(), 1-c.Rank(), 0)
		fmt.Printf("rank %s: receive returned %v\n", rank, err)
	case "abort":
		c, err := comm.World()
		if err != nil {
			panic(err)
		}
		code, _ := strconv.Atoi(os.Args[2])
		if c.Rank() == 2 {
			c.Abort(code, "input is inconsistent")
		}
		time.Sleep(time.Minute) // killed by the launcher
	case "exit", "kill", "leave":
		c, err := comm.World()
		if err != nil {
			panic(err)
		}
		code, _ := strconv.Atoi(os.Args[len(os.Args)-1])
		switch {
		case c.Rank() == 1 && os.Args[1] == "exit":
			os.Exit(code)
		case c.Rank() == 1 && os.Args[1] == "kill":
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		case c.Rank() == 1: // leave: Close returns once every other rank is gone
			c.Close()
			os.Exit(code)
		}
		if _, _, err := c.Recv(context.Background(), 1, 0); err != nil {
			if os.Args[1] == "leave" {
				c.Abort(1, err.Error())
			}
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "place":
		c, err := comm.World()
		if err != nil {
			panic(err)
		}
		status, _ := os.ReadFile("/proc/self/status")
		cpus := regexp.MustCompile(`Cpus_allowed_list:\s*(\S+)`).FindSubmatch(status)
		fmt.Printf("rank %s node %s local %s/%s threads %s gomaxprocs %d cpus %s\n", rank, os.Getenv("PMRUN_NODE"),
			os.Getenv("PMRUN_LOCAL_RANK"), os.Getenv("PMRUN_LOCAL_SIZE"), os.Getenv("PMRUN_THREADS"), runtime.GOMAXPROCS(0), cpus[1])
		n, r := c.Size(), c.Rank()
		got, _, err := c.Sendrecv(context.Background(), []byte(rank), (r+1)%n, 0, nil, (r+n-1)%n, 0)
		if err != nil {
			panic(err)
		}
		fmt.Printf("rank %s: ring from %s\n", rank, got)
		c.Close()
	case "wait":
		c, err := comm.World()
		if err != nil {
			panic(err)
		}
		fmt.Printf("rank %d waiting\n", c.Rank())
		_, _, err = c.Recv(context.Background(), comm.AnySource, 0)
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
