// Command hello prints each rank's rank, the world size and the host it runs on.
//
//	pmrun -np 4 ./bin/examples/hello
package main

import (
	"fmt"
	"log"
	"os"

	"github.com/pmrun/pmrun/comm"
)

func main() {
	c, err := comm.World()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	host, _ := os.Hostname()
	fmt.Printf("hello from rank %d of %d on %s\n", c.Rank(), c.Size(), host)
}
