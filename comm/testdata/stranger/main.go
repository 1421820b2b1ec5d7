// Command stranger has rank 0 attack every other rank's peer port (garbage
// bytes, a handshake with the wrong secret, a silent connection), then checks that
// the job still works: a ring of messages through all ranks.
package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"github.com/pmrun/pmrun/comm"
	"github.com/pmrun/pmrun/internal/wire"
)

func main() {
	c, err := comm.World()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if c.Rank() == 0 {
		for r := 1; r < c.Size(); r++ {
			addr := c.PeerAddr(r)
			if conn, err := net.Dial("tcp", addr); err == nil {
				conn.Write([]byte("GET / HTTP/1.0\r\n\r\nthis is not pmrun"))
				conn.Close()
			}
			if conn, err := net.Dial("tcp", addr); err == nil {
				err := wire.DialHandshake(conn, []byte("not-the-job-secret-at-all"), wire.RolePeer, 9)
				fmt.Printf("wrong-secret handshake with rank %d: refused=%v\n", r, err != nil)
				conn.Close()
			}
			if conn, err := net.Dial("tcp", addr); err == nil {
				defer conn.Close() // silent: must not block anything
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	next, prev := (c.Rank()+1)%c.Size(), (c.Rank()+c.Size()-1)%c.Size()
	got, _, err := c.Sendrecv(ctx, []byte{byte(c.Rank())}, next, 0, nil, prev, 0)
	if err != nil || int(got[0]) != prev {
		log.Fatalf("rank %d: ring after attacks: %v %v", c.Rank(), got, err)
	}
	fmt.Printf("rank %d: ring ok\n", c.Rank())
}
