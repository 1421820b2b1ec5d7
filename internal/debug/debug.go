// Package debug tells which of pmrun's diagnostics PMRUN_DEBUG turns on.
package debug

import (
	"os"
	"strings"
)

// Env is the variable read: comma-separated words (comm, coll, node, all).
const Env = "PMRUN_DEBUG"

// On reports whether PMRUN_DEBUG includes what or "all". It does not
// allocate: collectives ask on every call.
func On(what string) bool {
	for rest := os.Getenv(Env); rest != ""; {
		var w string
		w, rest, _ = strings.Cut(rest, ",")
		if w == what || w == "all" {
			return true
		}
	}
	return false
}
