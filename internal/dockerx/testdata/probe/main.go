// Command probe is the program in the image the dockerx tests build. It
// prints its host name to stdout and to stderr, answers every TCP connection
// on port 7000 with its host name, and dials each address given as an
// argument until it answers (for at most a minute), printing the answer.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	host, _ := os.Hostname()
	fmt.Println("stdout", host)
	fmt.Fprintln(os.Stderr, "stderr", host)
	ln, err := net.Listen("tcp", ":7000")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, addr := range os.Args[1:] {
		go dial(addr)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Fprintln(c, host)
		c.Close()
	}
}

func dial(addr string) {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			continue
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(io.LimitReader(c, 256))
		c.Close()
		if err == nil {
			fmt.Printf("reached %s: %s\n", addr, strings.TrimSpace(string(b)))
			return
		}
	}
	fmt.Printf("gave up on %s\n", addr)
}
