package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pmrun/pmrun/internal/tlsx"
)

// tlsJob sends a message larger than the eager limit around a ring and
// reduces the ranks: every rank prints the same line when the data arrived
// intact.
const tlsJob = `from mpi4py import MPI
c = MPI.COMM_WORLD
r, n = c.Get_rank(), c.Get_size()
data = bytes((r * 7 + i) % 251 for i in range(1 << 20))
got = c.sendrecv(data, dest=(r + 1) % n, source=(r - 1) % n)
want = bytes(((r - 1) % n * 7 + i) % 251 for i in range(1 << 20))
print("ring", got == want, "sum", c.allreduce(r), "node", MPI.Get_processor_name() != "")
`

func tlsFiles(t *testing.T) []string {
	t.Helper()
	f, err := tlsx.Generate(t.TempDir(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return []string{"--tls-cert", f.Cert, "--tls-key", f.Key, "--tls-ca", f.CA}
}

func checkTLSJob(t *testing.T, r res, np int) {
	t.Helper()
	want := "ring True sum " + strconv.Itoa(np*(np-1)/2) + " node True\n"
	if r.code != 0 || strings.Count(r.out, want) != np {
		t.Fatalf("status %d, want %d lines %q\nstdout:\n%s\nstderr:\n%s", r.code, np, want, r.out, r.err)
	}
}

// TestTLSJobs runs jobs with mutual TLS on two simulated nodes of this
// machine and on two agents, whose ranks talk across nodes over TLS; a
// launcher without TLS, or with a certificate of another CA, is refused by
// the agents with a message saying what is wrong.
func TestTLSJobs(t *testing.T) {
	flags := tlsFiles(t)
	job := script(t, "tls.py", tlsJob)

	t.Run("local", func(t *testing.T) {
		checkTLSJob(t, pmrun(t, "", append(append([]string{"-np", "4", "--ppn", "2"}, flags...), job)...), 4)
	})

	a := startNodeArgs(t, "t0", flags...)
	b := startNodeArgs(t, "t1", flags...)
	hosts := []string{"-H", a + ":2," + b + ":2", "-np", "4"}
	t.Run("agents", func(t *testing.T) {
		checkTLSJob(t, pmrun(t, "", append(append(hosts, flags...), job)...), 4)
	})
	t.Run("plain launcher", func(t *testing.T) {
		r := pmrun(t, "", append(hosts, job)...)
		if r.code != 1 || !strings.Contains(r.err, "requires TLS: give --tls-cert, --tls-key and --tls-ca") {
			t.Errorf("status %d, stderr:\n%s", r.code, r.err)
		}
	})
	t.Run("other CA", func(t *testing.T) {
		r := pmrun(t, "", append(append(hosts, tlsFiles(t)...), job)...)
		if r.code != 1 || !strings.Contains(r.err, "not signed by this cluster's CA") {
			t.Errorf("status %d, stderr:\n%s", r.code, r.err)
		}
	})
	t.Run("partial flags", func(t *testing.T) {
		r := pmrun(t, "", append(append(hosts, flags[:2]...), job)...)
		if r.code != exitUsage || !strings.Contains(r.err, "mutual TLS needs --tls-cert, --tls-key and --tls-ca together") {
			t.Errorf("status %d, stderr:\n%s", r.code, r.err)
		}
	})
}

// TestDockerTLS runs a job with mutual TLS on agents in containers, which
// get the certificate in their environment.
func TestDockerTLS(t *testing.T) {
	needDocker(t)
	r := pmrun(t, "", append(append([]string{"--docker", "--nodes", "2", "-np", "4", "--map-by", "node"}, tlsFiles(t)...), script(t, "tls.py", tlsJob))...)
	checkTLSJob(t, r, 4)
	if l := leftovers(t, r.pid); l != "" {
		t.Errorf("left behind: %s", l)
	}
}

// TestTLSInit: pmrun tls-init makes the files and refuses to overwrite them.
func TestTLSInit(t *testing.T) {
	dir := t.TempDir()
	r := pmrun(t, "", "tls-init", "--days", "2", dir)
	if r.code != 0 || !strings.Contains(r.out, "--tls-cert "+dir+"/cert.pem --tls-key "+dir+"/key.pem --tls-ca "+dir+"/ca.pem") {
		t.Fatalf("status %d, out %q, stderr %q", r.code, r.out, r.err)
	}
	if r := pmrun(t, "", "tls-init", dir); r.code != 1 || !strings.Contains(r.err, "exists: not overwriting it") {
		t.Errorf("second run: status %d, stderr %q", r.code, r.err)
	}
	if r := pmrun(t, "", "tls-init"); r.code != exitUsage || !strings.Contains(r.err, "DIR is required") {
		t.Errorf("no DIR: status %d, stderr %q", r.code, r.err)
	}
}
