// Command big sends one large message (default 512 MiB) from rank 0 to rank 1,
// which verifies it.
package main

import (
	"context"
	"flag"
	"fmt"
	"hash/crc32"
	"log"
	"time"

	"github.com/pmrun/pmrun/comm"
)

func main() {
	mib := flag.Int("mib", 512, "message size in MiB")
	flag.Parse()
	c, err := comm.World()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	n := *mib << 20
	buf := make([]byte, n)
	switch c.Rank() {
	case 0:
		for i := range buf {
			buf[i] = byte(i*7 + i>>20)
		}
		sum := crc32.ChecksumIEEE(buf)
		start := time.Now()
		if err := c.Send(ctx, 1, 0, buf); err != nil {
			log.Fatal(err)
		}
		var s [4]byte
		s[0], s[1], s[2], s[3] = byte(sum), byte(sum>>8), byte(sum>>16), byte(sum>>24)
		if err := c.Send(ctx, 1, 1, s[:]); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("rank 0: sent %d MiB in %v\n", *mib, time.Since(start).Round(time.Millisecond))
	case 1:
		st, err := c.RecvInto(ctx, 0, 0, buf)
		if err != nil {
			log.Fatal(err)
		}
		s, _, err := c.Recv(ctx, 0, 1)
		if err != nil {
			log.Fatal(err)
		}
		want := uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
		if st.Count != n || crc32.ChecksumIEEE(buf) != want {
			log.Fatalf("rank 1: got %d bytes, checksum mismatch", st.Count)
		}
		fmt.Printf("rank 1: received %d MiB intact\n", *mib)
	}
}
