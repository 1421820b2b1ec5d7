// Command behave does what its first argument says, to exercise the launcher:
// env NAME (print a variable), stdin (rank 0 echoes its input), sleep (sleep
// until killed, reporting signals), abort N (rank 2 calls comm's Abort).
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/signal"
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
