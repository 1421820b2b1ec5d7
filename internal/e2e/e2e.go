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

// DockerVar, set to 0, exempts the Docker engine from Var: .ci/run sets it
// on a machine where no engine could be started, so that the Docker tests
// skip, saying why, while every other requirement still fails.
const DockerVar = "PMRUN_E2E_DOCKER"

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

// RequireDocker is Require for a test that needs a Docker engine: with
// PMRUN_E2E_DOCKER=0 a missing engine skips the test even when Required.
func RequireDocker(tb testing.TB, ok bool, why string) {
	tb.Helper()
	if !ok && os.Getenv(DockerVar) == "0" {
		tb.Skip(why + " (" + DockerVar + "=0: no engine could be started on this machine)")
	}
	Require(tb, ok, why)
}

// NotShort skips tb under -short, saying what is left out, or fails it when
// Required: the end-to-end run does not take the short cut.
func NotShort(tb testing.TB, what string) {
	tb.Helper()
	Require(tb, !testing.Short(), "-short leaves out "+what)
}
