package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pmrun/pmrun/internal/tlsx"
)

// tlsFlags are --tls-cert, --tls-key and --tls-ca, shared by the launcher,
// pmrun node, pmrun members and pmrun task-hub. They default to
// $PMRUN_TLS_CERT, $PMRUN_TLS_KEY and $PMRUN_TLS_CA; with none given, the
// PEM forms of those variables (what a launcher gives the agents it starts
// in containers) are read.
type tlsFlags struct{ files tlsx.Files }

func (t *tlsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.files.Cert, "tls-cert", os.Getenv(tlsx.EnvCert), "")
	fs.StringVar(&t.files.Key, "tls-key", os.Getenv(tlsx.EnvKey), "")
	fs.StringVar(&t.files.CA, "tls-ca", os.Getenv(tlsx.EnvCA), "")
}

// load reads the files the flags name (nil: TLS off).
func (t *tlsFlags) load() (*tlsx.Config, error) {
	if t.files == (tlsx.Files{}) {
		return tlsx.FromEnv(os.Getenv)
	}
	return t.files.Load()
}

const tlsInitUsage = `usage: pmrun tls-init [--days N] DIR

makes a new certificate authority (ca.pem, ca-key.pem) in DIR and one
certificate it signs (cert.pem, key.pem) for every node of a cluster to
share; any other certificate the CA signs is a member too. Then give every
agent, launcher and task hub
  --tls-cert DIR/cert.pem --tls-key DIR/key.pem --tls-ca DIR/ca.pem
Keep ca-key.pem off the nodes. Existing files are not overwritten.

options:
  --days N    validity (default 365)
`

// runTLSInit is "pmrun tls-init".
func runTLSInit(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pmrun tls-init", flag.ContinueOnError)
	days := fs.Int("days", 365, "")
	var dir string
	check := func() error {
		switch {
		case *days < 1:
			return fmt.Errorf("--days %d must be at least 1", *days)
		case fs.NArg() == 0:
			return errors.New("DIR is required")
		case fs.NArg() > 1:
			return fmt.Errorf("one DIR, after the flags: got %q", fs.Args())
		}
		dir = fs.Arg(0)
		return nil
	}
	// DIR is the one argument after the flags: parseSub's check takes it, so
	// that parseSub does not refuse it as a stray argument.
	if code := parseSubArgs(fs, args, tlsInitUsage, check, stdout, stderr); code >= 0 {
		return code
	}
	f, err := tlsx.Generate(dir, time.Duration(*days)*24*time.Hour)
	if err != nil {
		fmt.Fprintf(stderr, "pmrun tls-init: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "--tls-cert %s --tls-key %s --tls-ca %s\n", f.Cert, f.Key, f.CA)
	return 0
}
