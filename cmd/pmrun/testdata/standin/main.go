// Command standin is a stand-in for pmrun's Python task worker: see package
// internal/tasktest.
package main

import (
	"fmt"
	"os"

	"github.com/pmrun/pmrun/internal/tasktest"
)

func main() {
	if err := tasktest.Serve(os.NewFile(3, "worker-stream")); err != nil {
		fmt.Fprintf(os.Stderr, "standin: %v\n", err)
		os.Exit(1)
	}
}
