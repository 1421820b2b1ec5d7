// Command behave does what its first argument says, to exercise the launcher:
// env NAME (print a variable), stdin (rank 0 echoes its input), sleep (sleep
// until killed, reporting signals), abort N (rank 2 calls comm's Abort), hold
// DIR [chatty] (write DIR/RANK.pid holding "PID JOB", then receive from the
// other of two ranks, which receives too: forever; with chatty, print lines
// meanwhile).
package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
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
	}
}
