// Command mkwheel writes pmrun's wheel (`make wheel`):
//
//	go run ./internal/wheel/mkwheel -bin bin -version 0.4.0 -out dist
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/pmrun/pmrun/internal/wheel"
)

func main() {
	bin := flag.String("bin", "bin", "the `make build` tree")
	version := flag.String("version", "", "the version (VERSION)")
	out := flag.String("out", "dist", "where the wheel goes")
	flag.Parse()
	if *version == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: mkwheel -version V [-bin DIR] [-out DIR]")
		os.Exit(2)
	}
	p, err := wheel.Build(*bin, *version, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkwheel:", err)
		os.Exit(1)
	}
	fmt.Println(p)
}
