package main

// #include <stdlib.h>
import "C"

import (
	"unsafe"

	"github.com/pmrun/pmrun/internal/timerslack"
)

// The Python bridge loads this library with its thread's timer slack at the
// monitor thread's (see timerslack) and timerslack.Env set, after the
// interpreter started: Go's copy of the environment is the one the process
// started with, so the slack this thread, which runs the inits, gives back
// is read from the C library's.
func init() {
	name := C.CString(timerslack.Env)
	defer C.free(unsafe.Pointer(name))
	if v := C.getenv(name); v != nil {
		timerslack.RestoreTo(C.GoString(v))
	}
}
