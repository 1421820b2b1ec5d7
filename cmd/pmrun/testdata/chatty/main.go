// Command chatty prints many long lines from every rank at once, in many small
// writes, to check that the launcher never mixes two ranks' bytes in one line.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	rank := os.Getenv("PMRUN_RANK")
	for i := range 2000 {
		line := fmt.Sprintf("rank=%s line=%d %s end\n", rank, i, strings.Repeat(rank, 100+i%50))
		for len(line) > 0 { // dribble the line out in pieces
			n := min(7, len(line))
			os.Stdout.WriteString(line[:n])
			line = line[n:]
		}
	}
	fmt.Fprintf(os.Stderr, "rank=%s done", rank) // no final newline
}
