// Command shared allocates node-shared memory over the ranks of each node:
// every rank fills its part, and after a barrier the node's rank 0 checks
// every part through its own view of the region. With -kill, the last rank
// then dies by SIGKILL while the region is mapped, after its node's rank 0
// has left behind a file named as a region is between its creation and its
// last mapping (as when its creator dies then): the launcher must remove it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"syscall"
	"time"

	"github.com/pmrun/pmrun/collective"
	"github.com/pmrun/pmrun/comm"
)

func main() {
	kill := flag.Bool("kill", false, "the last rank dies by SIGKILL with the region mapped")
	n := flag.Int("n", 1<<16, "float64s per rank")
	flag.Parse()
	c, err := comm.World()
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	fmt.Printf("rank %d: job %s\n", c.Rank(), os.Getenv(comm.EnvJob))
	node, err := c.SplitByNode(ctx)
	if err != nil {
		log.Fatal(err)
	}
	sh, err := comm.AllocShared(ctx, node, 8**n)
	if err != nil {
		log.Fatal(err)
	}
	mine, err := comm.FromBytes[float64](sh.Part(node.Rank()))
	if err != nil {
		log.Fatal(err)
	}
	for i := range mine {
		mine[i] = float64(c.Rank()*(*n) + i)
	}
	if err := collective.Barrier(ctx, node); err != nil {
		log.Fatal(err)
	}
	if node.Rank() == 0 {
		all := comm.SharedSlice[float64](sh)
		for r := range node.Size() {
			w := node.WorldRank(r)
			for i, v := range all[r**n : (r+1)**n] {
				if v != float64(w*(*n)+i) {
					log.Fatalf("rank %d's element %d is %v", w, i, v)
				}
			}
		}
		fmt.Printf("rank %d: %d parts of %d float64s seen\n", c.Rank(), node.Size(), *n)
	}
	if *kill {
		if node.Rank() == 0 {
			stray := fmt.Sprintf("/dev/shm/pmrun-%s-win-%d-dead", os.Getenv(comm.EnvJob), c.Rank())
			if err := os.WriteFile(stray, nil, 0o600); err != nil {
				log.Fatal(err)
			}
		}
		if err := collective.Barrier(ctx, c); err != nil {
			log.Fatal(err)
		}
		if c.Rank() == c.Size()-1 {
			fmt.Printf("rank %d: dying\n", c.Rank())
			os.Stdout.Sync()
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		time.Sleep(time.Minute) // the launcher ends the job
	}
	if err := sh.Free(ctx); err != nil {
		log.Fatal(err)
	}
	node.Close()
	fmt.Printf("rank %d: freed\n", c.Rank())
	c.Close()
}
