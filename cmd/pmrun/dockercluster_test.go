package main

import (
	"crypto/rand"
	"encoding/hex"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestClusterUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says string
	}{
		{nil, "want up, status or down"},
		{[]string{"start"}, `unknown command "start"`},
		{[]string{"up"}, "--docker is required"},
		{[]string{"up", "--docker", "--nodes", "0"}, "--nodes 0 must be at least 1"},
		{[]string{"up", "--docker", "--nodes", "two"}, "invalid value \"two\" for flag -nodes"},
		{[]string{"up", "--docker", "--cpus", "0"}, "--cpus 0: want a number of CPUs above 0"},
		{[]string{"up", "--docker", "--cpus", "-1.5"}, "--cpus -1.5"},
		{[]string{"up", "--docker", "--workers", "0"}, "--workers 0: want 1 to"},
		{[]string{"up", "--docker", "--cluster-key", ""}, "--cluster-key is empty"},
		{[]string{"up", "--docker", "--name", "Bad/Name"}, `--name "Bad/Name"`},
		{[]string{"up", "--docker", "extra"}, `unexpected argument "extra"`},
		{[]string{"down", "--nodes", "2"}, "flag provided but not defined: -nodes"},
		{[]string{"down", "--name", ""}, `--name ""`},
		{[]string{"status", "now"}, `unexpected argument "now"`},
	} {
		r := pmrun(t, "", append([]string{"cluster"}, tc.args...)...)
		if r.code != exitUsage || !strings.Contains(r.err, tc.says) || !strings.Contains(r.err, "usage: pmrun cluster up") {
			t.Errorf("pmrun cluster %s: status %d, want %d, the usage and %q:\n%s", strings.Join(tc.args, " "), r.code, exitUsage, tc.says, r.err)
		}
	}
	r := pmrun(t, "", "cluster", "up", "-h")
	if r.code != 0 || !strings.Contains(r.out, "--workers N") {
		t.Errorf("pmrun cluster up -h: status %d, stdout:\n%s", r.code, r.out)
	}
}

// clusterLeft lists the containers and networks of cluster name.
func clusterLeft(t *testing.T, name string) string {
	t.Helper()
	return labelled(t, clusterLabel+"="+name)
}

// testCluster returns a cluster name of the test's own, whose containers and
// network are removed when the test ends.
func testCluster(t *testing.T) string {
	b := make([]byte, 4)
	rand.Read(b)
	name := "test-" + hex.EncodeToString(b)
	t.Cleanup(func() {
		if clusterLeft(t, name) != "" {
			pmrun(t, "", "cluster", "down", "--name", name)
		}
	})
	return name
}

// TestDockerCluster starts a cluster that outlives pmrun cluster up, runs an
// MPI job on it from this host through its published address, and removes
// it, twice.
func TestDockerCluster(t *testing.T) {
	needDocker(t)
	pi := filepath.Join(examplesDir(t), "pi")
	name := testCluster(t)
	r := pmrun(t, "", "cluster", "up", "--docker", "--nodes", "2", "--name", name)
	t.Logf("cluster up: status %d in %v", r.code, r.took)
	if r.code != 0 {
		t.Fatalf("cluster up: status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
	}
	m := regexp.MustCompile(`address (127\.0\.0\.1:\d+), key ([0-9a-f]{32})\n`).FindStringSubmatch(r.out)
	if m == nil || !strings.Contains(r.out, "pmrun --cluster "+m[1]) || !strings.Contains(r.out, "PMRUN_CLUSTER="+m[1]) {
		t.Fatalf("cluster up does not say its address and key and how to use them:\n%s", r.out)
	}
	addr, key := m[1], m[2]

	// Nothing of another command removes it: not a second up, nor the
	// cleanup of ended launchers (the one of up has ended).
	if r := pmrun(t, "", "cluster", "up", "--docker", "--name", name); r.code != 1 || !strings.Contains(r.err, "is up already ("+"2 containers running, address "+addr+")") {
		t.Errorf("a second cluster up: status %d, want 1 saying it is up\n%s", r.code, r.err)
	}
	if r := pmrun(t, "", "cleanup"); r.code != 0 || strings.Contains(r.out, "pmrun-cluster-"+name) {
		t.Errorf("cleanup: status %d\n%s%s", r.code, r.out, r.err)
	}
	if r := pmrun(t, "", "cluster", "status", "--env", "--name", name); r.code != 0 ||
		r.out != "export PMRUN_CLUSTER="+addr+"\nexport PMRUN_CLUSTER_KEY="+key+"\n" {
		t.Errorf("cluster status --env: status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
	}
	// Both nodes are listed (a loaded machine may find one suspect for a
	// moment).
	if r := pmrun(t, "", "cluster", "status", "--name", name); r.code != 0 ||
		len(regexp.MustCompile(`(?m)^node[01] +(alive|suspect) `).FindAllString(r.out, -1)) != 2 {
		t.Errorf("cluster status: status %d, want both nodes listed\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
	}

	for i := range 2 {
		r := pmrun(t, "", "--cluster", addr, "--cluster-key", key, "-np", "4", pi)
		t.Logf("job %d: status %d in %v", i, r.code, r.took)
		if r.code != 0 || !strings.Contains(r.out, "on 4 ranks") {
			t.Fatalf("job %d on the cluster: status %d\nstdout:\n%s\nstderr:\n%s", i, r.code, r.out, r.err)
		}
	}
	if r := pmrun(t, "", "--cluster", addr, "--cluster-key", strings.Repeat("0", 32), "-np", "1", pi); r.code == 0 {
		t.Errorf("a job with the wrong key ran:\n%s", r.out)
	}

	r = pmrun(t, "", "cluster", "down", "--name", name)
	if r.code != 0 || r.out != "pmrun cluster "+name+": removed 2 containers and its network\n" {
		t.Errorf("cluster down: status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
	}
	if left := clusterLeft(t, name); left != "" {
		t.Errorf("left behind: %s", left)
	}
	r = pmrun(t, "", "cluster", "down", "--name", name)
	if r.code != 0 || r.out != "pmrun cluster down: no cluster "+name+" is up\n" {
		t.Errorf("a second cluster down: status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
	}
	if r := pmrun(t, "", "cluster", "status", "--name", name); r.code != 1 || !strings.Contains(r.err, "no cluster "+name+" is up") {
		t.Errorf("cluster status after down: status %d\n%s", r.code, r.err)
	}
}

// TestDockerClusterRefuses checks that a cluster that cannot start says why
// and leaves nothing behind.
func TestDockerClusterRefuses(t *testing.T) {
	needDocker(t)
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"--nodes", "9999"}, envMaxNodes + "=9999"},
		{[]string{"--image", "nosuch:img"}, "image nosuch:img is not on the engine"},
		// The engine refuses the container after the network was made.
		{[]string{"--cpus", "999", "--nodes", "1"}, "starting node0"},
	} {
		name := testCluster(t)
		args := append([]string{"cluster", "up", "--docker", "--name", name}, tc.args...)
		r := pmrun(t, "", args...)
		if r.code != 1 || !strings.Contains(r.err, tc.says) {
			t.Errorf("pmrun %s: status %d, want 1 and a message with %q:\n%s", strings.Join(args, " "), r.code, tc.says, r.err)
		}
		if left := clusterLeft(t, name); left != "" {
			t.Errorf("left behind: %s", left)
		}
	}
}
