// Package version holds pmrun's version, which the launcher and the Python
// package's runtime library both report.
package version

// Version is set at build time from the repository's VERSION file by the
// Makefile (-ldflags "-X github.com/pmrun/pmrun/internal/version.Version=...");
// a plain go build says "dev".
var Version = "dev"
