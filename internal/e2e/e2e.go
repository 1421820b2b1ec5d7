// Package e2e decides what a test does when something it needs is missing
// from the machine (python3, /dev/shm, Docker, a non-loopback address): it
// skips, except when PMRUN_E2E=1 (as .ci/run sets), where the missing
// requirement fails the test, so that CI never passes by skipping.
//
//	e2e.Require(t, err == nil, "no python3 on this machine")
package e2e

import (
	"os"
	"testing"
)

// Var is the environment variable that makes missing requirements fail.
const Var = "PMRUN_E2E"

// Required reports whether missing requirements fail tests (PMRUN_E2E=1).
func Required() bool { return os.Getenv(Var) == "1" }

// Require does nothing when ok; otherwise it skips tb with why, or fails it
// when Required.
func Require(tb testing.TB, ok bool, why string) {
	tb.Helper()
	if ok {
		return
	}
	if Required() {
		tb.Fatalf("%s=1 but %s", Var, why)
	}
	tb.Skip(why)
}

// NotShort skips tb under -short, saying what is left out, or fails it when
// Required: the end-to-end run does not take the short cut.
func NotShort(tb testing.TB, what string) {
	tb.Helper()
	Require(tb, !testing.Short(), "-short leaves out "+what)
}
