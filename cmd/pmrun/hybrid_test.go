package main

import (
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// placed is what a rank of `behave place` says of itself.
type placed struct {
	node, local, threads, gomaxprocs, cpus string
	ringFrom                               string
}

var (
	placeLine = regexp.MustCompile(`(?m)^rank (\d+) node (\S+) local (\S+) threads (\S*) gomaxprocs (\d+) cpus (\S+)$`)
	ringLine  = regexp.MustCompile(`(?m)^rank (\d+): ring from (\d+)$`)
)

// runPlace runs `behave place` with pmrun's args and returns what each rank
// said, by rank, having checked that the job succeeded, every rank of np
// spoke once and the ring went round.
func runPlace(t *testing.T, np int, args ...string) (map[int]placed, res) {
	t.Helper()
	r := pmrun(t, "", append(args, prog("behave"), "place")...)
	if r.code != 0 {
		t.Fatalf("pmrun %v: status %d\nstdout:\n%s\nstderr:\n%s", args, r.code, r.out, r.err)
	}
	ranks := map[int]placed{}
	for _, m := range placeLine.FindAllStringSubmatch(r.out, -1) {
		n, _ := strconv.Atoi(m[1])
		if _, dup := ranks[n]; dup {
			t.Fatalf("rank %d spoke twice:\n%s", n, r.out)
		}
		ranks[n] = placed{node: m[2], local: m[3], threads: m[4], gomaxprocs: m[5], cpus: m[6]}
	}
	for _, m := range ringLine.FindAllStringSubmatch(r.out, -1) {
		n, _ := strconv.Atoi(m[1])
		p := ranks[n]
		p.ringFrom = m[2]
		ranks[n] = p
	}
	if len(ranks) != np {
		t.Fatalf("pmrun %v: %d ranks spoke, want %d:\n%s", args, len(ranks), np, r.out)
	}
	for n, p := range ranks {
		if want := strconv.Itoa((n + np - 1) % np); p.ringFrom != want {
			t.Errorf("rank %d received %q around the ring, want %s", n, p.ringFrom, want)
		}
	}
	return ranks, r
}

// checkThreads checks that every rank has threads T and GOMAXPROCS G.
func checkThreads(t *testing.T, what string, ranks map[int]placed, threads, gomaxprocs int) {
	t.Helper()
	for n, p := range ranks {
		if p.threads != strconv.Itoa(threads) || p.gomaxprocs != strconv.Itoa(gomaxprocs) {
			t.Errorf("%s: rank %d has PMRUN_THREADS %q and GOMAXPROCS %s, want %d and %d", what, n, p.threads, p.gomaxprocs, threads, gomaxprocs)
		}
	}
}

// TestThreads: --threads T gives every rank PMRUN_THREADS=T and GOMAXPROCS=T;
// a GOMAXPROCS the user sets (-x or the environment) wins; PMRUN_THREADS in
// the launcher's environment is --threads.
func TestThreads(t *testing.T) {
	ranks, _ := runPlace(t, 2, "-np", "2", "--threads", "3")
	checkThreads(t, "--threads 3", ranks, 3, 3)
	ranks, _ = runPlace(t, 2, "-np", "2", "--threads", "3", "-x", "GOMAXPROCS=2")
	checkThreads(t, "--threads 3 -x GOMAXPROCS=2", ranks, 3, 2)
	ranks, _ = runPlace(t, 2, "-np", "2", "-x", "PMRUN_THREADS=4")
	checkThreads(t, "-x PMRUN_THREADS=4", ranks, 4, 4)
	t.Setenv("PMRUN_THREADS", "5")
	ranks, _ = runPlace(t, 2, "-np", "2")
	checkThreads(t, "PMRUN_THREADS=5 in the environment", ranks, 5, 5)
	t.Setenv("GOMAXPROCS", "1")
	ranks, _ = runPlace(t, 2, "-np", "2", "--threads", "2")
	checkThreads(t, "GOMAXPROCS=1 in the environment, --threads 2", ranks, 2, 1)
}

// TestThreadsDefault: without --threads a rank gets its share of the
// machine's cores, at least 1.
func TestThreadsDefault(t *testing.T) {
	cores := runtime.NumCPU()
	for np := 1; np <= 3; np++ {
		ranks, _ := runPlace(t, np, "-np", strconv.Itoa(np))
		want := max(1, cores/np)
		checkThreads(t, "-np "+strconv.Itoa(np), ranks, want, want)
	}
}

// mapHead and mapRow are the heading and a node's line of --display-map.
var (
	mapHead = regexp.MustCompile(`(?m)^NODE\s+RANKS\s+THREADS\s+CORES$`)
	mapRow  = regexp.MustCompile(`(?m)^(\S+)\s+([\d,]+)\s+(\d+)\s+(\d+)$`)
)

// checkMap checks that --display-map (in stderr) lists every rank once, on
// the node and with the threads the rank itself reports.
func checkMap(t *testing.T, stderr string, ranks map[int]placed) {
	t.Helper()
	if !mapHead.MatchString(stderr) {
		t.Fatalf("no --display-map table in stderr:\n%s", stderr)
	}
	seen := map[int]bool{}
	for _, m := range mapRow.FindAllStringSubmatch(stderr, -1) {
		for _, s := range strings.Split(m[2], ",") {
			n, _ := strconv.Atoi(s)
			p, ok := ranks[n]
			switch {
			case seen[n]:
				t.Errorf("rank %d listed twice:\n%s", n, stderr)
			case !ok:
				t.Errorf("rank %d listed, but no such rank spoke:\n%s", n, stderr)
			case p.node != m[1] || p.threads != m[3]:
				t.Errorf("rank %d listed on %s with %s threads; it ran on %s with %s:\n%s", n, m[1], m[3], p.node, p.threads, stderr)
			}
			seen[n] = true
		}
	}
	if len(seen) != len(ranks) {
		t.Errorf("--display-map lists %d ranks, want %d:\n%s", len(seen), len(ranks), stderr)
	}
}

// TestPerNodeLocal: --ppn P on this machine groups the ranks P to a
// simulated node, each with its own name and local ranks; --display-map says
// so; the ranks still talk to each other.
func TestPerNodeLocal(t *testing.T) {
	host, _ := os.Hostname()
	ranks, r := runPlace(t, 5, "-np", "5", "--ppn", "2", "--display-map")
	sizes := []int{2, 2, 2, 2, 1}
	for n, p := range ranks {
		node := host + "-" + strconv.Itoa(n/2)
		local := strconv.Itoa(n%2) + "/" + strconv.Itoa(sizes[n])
		if p.node != node || p.local != local {
			t.Errorf("rank %d: node %s, local rank/size %s; want %s and %s", n, p.node, p.local, node, local)
		}
	}
	checkMap(t, r.err, ranks)
	if !strings.Contains(r.err, "pmrun: job map: 5 ranks on 3 nodes\n") {
		t.Errorf("--display-map's heading is missing:\n%s", r.err)
	}
	ranks, r = runPlace(t, 3, "-np", "3", "--display-map")
	for n, p := range ranks {
		if p.node != host || p.local != strconv.Itoa(n)+"/3" {
			t.Errorf("without --ppn rank %d: node %s, local %s; want %s and %d/3", n, p.node, p.local, host, n)
		}
	}
	checkMap(t, r.err, ranks)
}

// TestHybridUsageErrors: bad --ppn, --threads and --bind-to are refused,
// naming the option and the numbers.
func TestHybridUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"--ppn", "2", "true"}, "--ppn 2 on this machine groups the ranks into simulated nodes of 2: give -np too"},
		{[]string{"--ppn", "0", "-np", "2", "true"}, "--ppn 0: a node needs at least 1 rank"},
		{[]string{"-H", "a,b,c", "--ppn", "2", "-np", "7", "true"}, "-np 7 is more than --ppn 2 × 3 nodes = 6"},
		{[]string{"--docker", "--nodes", "2", "--ppn", "1", "-np", "3", "true"}, "-np 3 is more than --ppn 1 × 2 nodes = 2"},
		{[]string{"-H", "a,b", "--ppn", "1", "--map-by", "node", "true"}, "--map-by node would deal them round-robin"},
		{[]string{"-N", "2", "--ppn", "2", "true"}, "-N and --ppn both set ranks per node"},
		{[]string{"-H", "a", "-N", "2", "true"}, "-N (ranks per node) is for this machine only; on a cluster use --ppn N"},
		{[]string{"--threads", "0", "true"}, "--threads 0: each rank needs at least 1 thread"},
		{[]string{"-x", "PMRUN_THREADS=many", "true"}, `PMRUN_THREADS="many": want a number of threads`},
		{[]string{"--bind-to", "socket", "true"}, `--bind-to "socket": want core or none`},
	} {
		r := pmrun(t, "", tc.args...)
		if r.code != 2 || !strings.Contains(r.err, tc.says) {
			t.Errorf("pmrun %v: status %d, stderr:\n%s\nwant status 2 and %q", tc.args, r.code, r.err, tc.says)
		}
	}
}

// TestPerNodeAgents: --ppn P with -H places P ranks on each agent in turn,
// -np defaulting to P on every agent; a rank's threads are its share of its
// agent's cores; the launcher's GOMAXPROCS reaches the ranks.
func TestPerNodeAgents(t *testing.T) {
	hosts := startNode(t, "n0") + ":," + startNode(t, "n1") + ":"
	threads := strconv.Itoa(max(1, runtime.NumCPU()/2))
	ranks, r := runPlace(t, 4, "-H", hosts, "--ppn", "2", "--display-map")
	for n, p := range ranks {
		node, local := "n"+strconv.Itoa(n/2), strconv.Itoa(n%2)+"/2"
		if p.node != node || p.local != local || p.threads != threads || p.gomaxprocs != threads {
			t.Errorf("rank %d: node %s, local %s, threads %s, GOMAXPROCS %s; want %s, %s, %s, %s",
				n, p.node, p.local, p.threads, p.gomaxprocs, node, local, threads, threads)
		}
	}
	checkMap(t, r.err, ranks)
	ranks, _ = runPlace(t, 3, "-H", hosts, "--ppn", "2", "-np", "3", "--threads", "1")
	for n, p := range ranks {
		if node := "n" + strconv.Itoa(n/2); p.node != node || p.threads != "1" {
			t.Errorf("-np 3 --ppn 2: rank %d on %s with %s threads, want %s with 1", n, p.node, p.threads, node)
		}
	}
	t.Setenv("GOMAXPROCS", "1") // the launcher's, not the agents'
	ranks, _ = runPlace(t, 2, "-H", hosts, "--ppn", "1", "--threads", "2")
	checkThreads(t, "-H with GOMAXPROCS=1 in the launcher's environment", ranks, 2, 1)
}

// TestBindToCore: --bind-to core pins each rank to its threads' share of the
// CPUs, in rank order, here and on an agent; by default a rank may run on
// every CPU the launcher may.
func TestBindToCore(t *testing.T) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	var cpus []string
	for c := range len(set) * 64 {
		if set.IsSet(c) {
			cpus = append(cpus, strconv.Itoa(c))
		}
	}
	all, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	allowed := regexp.MustCompile(`Cpus_allowed_list:\s*(\S+)`).FindSubmatch(all)[1]
	np := min(len(cpus), 3) + 1 // on up to 3 CPUs, the last one wraps around
	check := func(what string, ranks map[int]placed) {
		t.Helper()
		for n, p := range ranks {
			if want := cpus[n%len(cpus)]; p.cpus != want {
				t.Errorf("%s: rank %d may run on CPUs %s, want %s", what, n, p.cpus, want)
			}
		}
	}
	ranks, _ := runPlace(t, np, "-np", strconv.Itoa(np), "--threads", "1", "--bind-to", "core")
	check("--bind-to core", ranks)
	ranks, _ = runPlace(t, np, "-np", strconv.Itoa(np), "-H", startNode(t, "n0")+":", "--threads", "1", "--bind-to", "core")
	check("-H --bind-to core", ranks)
	ranks, _ = runPlace(t, 2, "-np", "2")
	for n, p := range ranks {
		if p.cpus != string(allowed) {
			t.Errorf("without --bind-to: rank %d may run on CPUs %s, want the launcher's %s", n, p.cpus, allowed)
		}
	}
}

// TestDockerPerNode: --docker --nodes 2 --ppn 1 runs one rank in each
// container, whose threads are that container's cores.
func TestDockerPerNode(t *testing.T) {
	needDocker(t)
	r := pmrun(t, "", "--docker", "--nodes", "2", "--ppn", "1", "--display-map",
		"sh", "-c", `echo "rank $PMRUN_RANK node $PMRUN_NODE local $PMRUN_LOCAL_RANK/$PMRUN_LOCAL_SIZE threads $PMRUN_THREADS gomaxprocs $GOMAXPROCS cpus -"`)
	if r.code != 0 {
		t.Fatalf("status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.out, r.err)
	}
	ranks := map[int]placed{}
	nodes := map[string]bool{}
	for _, m := range placeLine.FindAllStringSubmatch(r.out, -1) {
		n, _ := strconv.Atoi(m[1])
		ranks[n] = placed{node: m[2], local: m[3], threads: m[4], gomaxprocs: m[5]}
		nodes[m[2]] = true
		if m[3] != "0/1" || m[4] != m[5] {
			t.Errorf("rank %d: local %s, threads %s, GOMAXPROCS %s; want 0/1 and threads = GOMAXPROCS", n, m[3], m[4], m[5])
		}
	}
	if len(ranks) != 2 || len(nodes) != 2 {
		t.Fatalf("want 2 ranks on 2 containers:\n%s", r.out)
	}
	checkMap(t, r.err, ranks)
	for _, m := range mapRow.FindAllStringSubmatch(r.err, -1) {
		if m[3] != m[4] {
			t.Errorf("node %s: %s threads per rank, want its %s cores:\n%s", m[1], m[3], m[4], r.err)
		}
	}
}
