package threads

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// ErrClosed is returned by every call on a pool after Close.
var ErrClosed = errors.New("threads: pool is closed")

// errGoexit is the error of a call whose body ended its goroutine with
// runtime.Goexit (as testing.T.FailNow does) on a worker.
var errGoexit = errors.New("threads: a body called runtime.Goexit")

// PanicError is returned by the call whose body panicked: the panic is
// recovered in the goroutine that ran the body and reaches the caller as an
// error instead of crashing the process.
type PanicError struct {
	// Value is the value passed to panic.
	Value any
	// Stack is the stack of the goroutine that panicked, as debug.Stack
	// formats it.
	Stack []byte
}

// Error returns the panic value and the stack of the panicking goroutine.
func (e *PanicError) Error() string {
	return fmt.Sprintf("threads: panic in a body: %v\n%s", e.Value, e.Stack)
}

// Unwrap returns the panic value when it is an error, so that errors.Is and
// errors.As see through a panic(err).
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// ended turns the way a body ended into an error: v, what recover returned,
// into a *PanicError carrying the stack (call it from the deferred function);
// not having returned without a panic (runtime.Goexit) into errGoexit.
func ended(v any, returned bool) error {
	switch {
	case v != nil:
		return &PanicError{Value: v, Stack: debug.Stack()}
	case !returned:
		return errGoexit
	}
	return nil
}
