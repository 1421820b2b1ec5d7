// Command fail makes one rank fail while the others are blocked in receives from
// it: -mode panic, exit (os.Exit(3)) or kill (SIGKILL to itself).
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"syscall"
	"time"

	"github.com/pmrun/pmrun/comm"
)

func main() {
	mode := flag.String("mode", "exit", "panic, exit or kill")
	victim := flag.Int("rank", 1, "rank that fails")
	flag.Parse()
	c, err := comm.World()
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	if c.Rank() != *victim {
		// Block on a message that never comes; the failure must end this.
		_, _, err := c.Recv(ctx, *victim, 0)
		fmt.Fprintf(os.Stderr, "rank %d: recv returned: %v\n", c.Rank(), err)
		time.Sleep(30 * time.Second) // the launcher must kill us, not wait
		os.Exit(0)
	}
	time.Sleep(200 * time.Millisecond) // let the others block
	fmt.Printf("FAILING_AT %d\n", time.Now().UnixNano())
	os.Stdout.Sync()
	switch *mode {
	case "panic":
		panic("rank failed on purpose")
	case "exit":
		os.Exit(3)
	case "kill":
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute)
	}
}
