package rankenv

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var secret = bytes.Repeat([]byte{0xab}, 32)

func TestRoundTrip(t *testing.T) {
	for _, e := range []Env{
		{Rank: 0, Size: 1, Job: "j", Rendezvous: "127.0.0.1:1", Secret: secret},
		{Rank: 3, Size: 8, LocalRank: 1, LocalSize: 2, HostSize: 8, Node: "h-1", Job: "abc", Rendezvous: "10.0.0.1:4000", Secret: secret, Threads: 3},
		{Rank: 5, Size: 6, LocalRank: 2, LocalSize: 3, Node: "n2", Job: "x", Rendezvous: "[::1]:9", Secret: secret[:16], Threads: 1},
	} {
		got, err := FromEnviron(e.AppendTo([]string{"HOME=/h", "PMRUN_RANK=99"}))
		if err != nil {
			t.Fatalf("%+v: %v", e, err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("round trip of %+v gave %+v", e, got)
		}
	}
}

// TestEnviron pins the variables and values that ranks, the Python package
// and users' programs read.
func TestEnviron(t *testing.T) {
	e := Env{Rank: 3, Size: 8, LocalRank: 1, LocalSize: 2, HostSize: 8, Node: "h-1", Job: "abc",
		Rendezvous: "10.0.0.1:4000", Secret: []byte("0123456789abcdef"), Threads: 3}
	want := []string{"PMRUN_RANK=3", "PMRUN_SIZE=8", "PMRUN_LOCAL_RANK=1", "PMRUN_LOCAL_SIZE=2",
		"PMRUN_HOST_SIZE=8", "PMRUN_NODE=h-1", "PMRUN_JOB=abc", "PMRUN_RENDEZVOUS=10.0.0.1:4000",
		"PMRUN_SECRET=30313233343536373839616263646566", "PMRUN_THREADS=3", "GOMAXPROCS=3"}
	if got := e.Environ(); !slices.Equal(got, want) {
		t.Errorf("Environ() = %q, want %q", got, want)
	}
	short := Env{Rank: 0, Size: 1, Job: "j", Rendezvous: "a:1", Secret: secret}.Environ()
	for _, kv := range short {
		for _, name := range []string{LocalRank, LocalSize, HostSize, Node, Threads, GoMaxProcs} {
			if strings.HasPrefix(kv, name+"=") {
				t.Errorf("unset field written: %s", kv)
			}
		}
	}
}

func TestAppendToKeepsGOMAXPROCS(t *testing.T) {
	e := Env{Rank: 0, Size: 1, Job: "j", Rendezvous: "a:1", Secret: secret, Threads: 2}
	for _, base := range [][]string{{"GOMAXPROCS=7"}, {"GOMAXPROCS="}} {
		env := e.AppendTo(base)
		if n := slices.IndexFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "GOMAXPROCS=") }); n != 0 ||
			slices.ContainsFunc(env[1:], func(kv string) bool { return strings.HasPrefix(kv, "GOMAXPROCS=") }) {
			t.Errorf("AppendTo(%q) = %q: want the base's GOMAXPROCS only", base, env)
		}
		if Lookup(env, Threads) != "2" {
			t.Errorf("AppendTo(%q): %s = %q, want 2", base, Threads, Lookup(env, Threads))
		}
	}
	if got := Lookup(e.AppendTo([]string{"X=1"}), GoMaxProcs); got != "2" {
		t.Errorf("GOMAXPROCS = %q, want the threads, 2", got)
	}
	base := make([]string, 1, 8)
	base[0] = "A=1"
	e.AppendTo(base)
	if got := base[:2]; got[1] != "" {
		t.Errorf("AppendTo wrote into its base's spare capacity: %q", got)
	}
}

func TestNotLaunched(t *testing.T) {
	for _, env := range [][]string{nil, {"PMRUN_SIZE=4"}, {"PMRUN_RANK="}} {
		if _, err := FromEnviron(env); !errors.Is(err, ErrNotLaunched) {
			t.Errorf("FromEnviron(%q) = %v, want ErrNotLaunched", env, err)
		}
	}
}

func TestBadValues(t *testing.T) {
	good := Env{Rank: 1, Size: 4, LocalRank: 1, LocalSize: 2, Job: "j", Rendezvous: "a:1", Secret: secret, Threads: 1}.Environ()
	for _, tc := range []struct {
		set  string // KEY=VALUE appended to good
		want string // in the error
	}{
		{"PMRUN_RANK=one", `PMRUN_RANK="one" is not an integer`},
		{"PMRUN_SIZE=", `PMRUN_SIZE="" is not an integer`},
		{"PMRUN_SIZE=4x", `PMRUN_SIZE="4x" is not an integer`},
		{"PMRUN_RANK=4", "PMRUN_RANK=4, PMRUN_SIZE=4: rank out of range"},
		{"PMRUN_RANK=-1", "PMRUN_RANK=-1, PMRUN_SIZE=4: rank out of range"},
		{"PMRUN_SIZE=0", "PMRUN_RANK=1, PMRUN_SIZE=0: rank out of range"},
		{"PMRUN_LOCAL_SIZE=two", `PMRUN_LOCAL_SIZE="two" is not an integer`},
		{"PMRUN_LOCAL_RANK=2", "PMRUN_LOCAL_RANK=\"2\", PMRUN_LOCAL_SIZE=\"2\": local rank out of range"},
		{"PMRUN_LOCAL_RANK=-1", "local rank out of range"},
		{"PMRUN_HOST_SIZE=many", `PMRUN_HOST_SIZE="many" is not an integer`},
		{"PMRUN_HOST_SIZE=-3", "PMRUN_HOST_SIZE=-3 must not be negative"},
		{"PMRUN_THREADS=1.5", `PMRUN_THREADS="1.5" is not an integer`},
		{"PMRUN_THREADS=-2", "PMRUN_THREADS=-2 must not be negative"},
		{"PMRUN_SECRET=zz", "PMRUN_SECRET must be at least 16 hex-encoded bytes"},
		{"PMRUN_SECRET=abcd", "PMRUN_SECRET must be at least 16 hex-encoded bytes"},
		{"PMRUN_RENDEZVOUS=", "PMRUN_RENDEZVOUS is not set"},
	} {
		_, err := FromEnviron(append(good[:len(good):len(good)], tc.set))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "rankenv: ") {
			t.Errorf("with %s: error %v, want one containing %q", tc.set, err, tc.want)
		}
	}
	if _, err := FromEnviron(good); err != nil {
		t.Errorf("the valid environment was refused: %v", err)
	}
}

func TestFromOS(t *testing.T) {
	want := Env{Rank: 2, Size: 3, Node: "n", Job: "j", Rendezvous: "a:1", Secret: secret}
	for _, kv := range []string{LocalRank, LocalSize, HostSize, Threads} {
		t.Setenv(kv, "")
	}
	for _, kv := range want.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	got, err := FromOS()
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("FromOS() = %+v, %v; want %+v", got, err, want)
	}
}
