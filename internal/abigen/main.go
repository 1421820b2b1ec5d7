// Command abigen writes python/pmrun/_abi.py, the Python side of the C ABI of
// pmrun's runtime library, from the Go source of that library (pybridge), so
// that the two sides are written once:
//
//   - every function marked //export becomes an entry of SIGNATURES, its
//     ctypes argument types and result type;
//   - every const block whose doc comment ends with the directive
//     //pmrun:abi becomes Python constants of the same values, named in
//     upper case with underscores (errRMAShared is ERR_RMA_SHARED, tInt8 is
//     T_INT8), under the block's comment.
//
// pybridge runs it with go generate:
//
//	go run ../internal/abigen -dir . -o ../python/pmrun/_abi.py
//
// Only the C types the library uses are understood: int64, *int64,
// unsafe.Pointer and *C.char as parameters, int64 or nothing as the result;
// any other type is an error that names the function and the parameter.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	dir := flag.String("dir", ".", "the directory of the library's Go source (pybridge)")
	out := flag.String("o", "", "the Python module to write (default: standard output)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "abigen: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	src, err := generate(*dir)
	if err == nil {
		if *out == "" {
			_, err = os.Stdout.Write(src)
		} else {
			err = os.WriteFile(*out, src, 0o644)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "abigen: %v\n", err)
		os.Exit(1)
	}
}
