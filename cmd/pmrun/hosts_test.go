package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pmrun/pmrun/node"
)

// TestParseHosts: -H entries, mpirun's host:slots and pmrun's host:port:slots,
// IPv6 in brackets, and errors that say how each field was read.
func TestParseHosts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []node.Host
		err  string
	}{
		{in: "a", want: []node.Host{{Addr: "a"}}},
		{in: "a:4,b", want: []node.Host{{Addr: "a", Slots: 4}, {Addr: "b"}}},
		{in: "a:slots=4", want: []node.Host{{Addr: "a", Slots: 4}}},
		{in: "127.0.0.1:27947:2", want: []node.Host{{Addr: "127.0.0.1:27947", Slots: 2}}},
		{in: "127.0.0.1:27947:", want: []node.Host{{Addr: "127.0.0.1:27947"}}},
		{in: "h:7000:slots=3", want: []node.Host{{Addr: "h:7000", Slots: 3}}},
		{in: "[::1]", want: []node.Host{{Addr: "::1"}}},
		{in: "[::1]:3", want: []node.Host{{Addr: "::1", Slots: 3}}},
		{in: "[::1]:27947:3", want: []node.Host{{Addr: "[::1]:27947", Slots: 3}}},
		{in: "127.0.0.1:27947", err: "-H 127.0.0.1:27947: read 27947 as slots (a port? write 127.0.0.1:27947:SLOTS)"},
		{in: "a:x", err: `-H a:x: read "x" as slots, want 1-4096`},
		{in: "a:0", err: `read "0" as slots`},
		{in: "a:99999:2", err: `read "99999" as the port, want 1-65535`},
		{in: "a:1:2:3", err: "too many fields"},
		{in: "::1:3", err: "an IPv6 address goes in brackets"},
		{in: "h:1:2", want: []node.Host{{Addr: "h:1", Slots: 2}}},
		{in: "[::1", err: "unclosed ["},
		{in: "[::1]x", err: `"x" after ]`},
		{in: ":4", err: "no host"},
		{in: ",", err: "no hosts"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			hs, err := parseHosts(tc.in)
			checkHosts(t, hs, err, tc.want, tc.err)
		})
	}
}

// TestParseHostfile: one -H entry per line, or mpirun's "host[:port] slots=N".
func TestParseHostfile(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []node.Host
		err        string
	}{
		{name: "mpirun", text: "# nodes\nn1 slots=2\nn2:7000 slots=4 max_slots=8\n\nn3\n",
			want: []node.Host{{Addr: "n1", Slots: 2}, {Addr: "n2:7000", Slots: 4}, {Addr: "n3"}}},
		{name: "entries", text: "n1:2\nn2:7000:4 # big\n[::1]:27947:1\n[fe80::1] slots=2\n",
			want: []node.Host{{Addr: "n1", Slots: 2}, {Addr: "n2:7000", Slots: 4}, {Addr: "[::1]:27947", Slots: 1}, {Addr: "fe80::1", Slots: 2}}},
		{name: "port as slots", text: "n1:27947\n", err: "hosts:1: n1:27947: read 27947 as slots (a port? write n1:27947:SLOTS)"},
		{name: "slots twice", text: "n1:7000:2 slots=2\n", err: "hosts:1: n1:7000:2 slots=2: want host[:port] before slots=N"},
		{name: "bad slots", text: "n1\nn2 slots=x\n", err: `hosts:2: n2 slots=x: read "x" as slots`},
		{name: "unknown", text: "n1 cpus=2\n", err: `unknown field "cpus=2"`},
		{name: "empty", text: "# none\n", err: "no hosts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "hosts")
			os.WriteFile(path, []byte(tc.text), 0o644)
			hs, err := parseHostfile(path)
			checkHosts(t, hs, err, tc.want, tc.err)
		})
	}
}

// checkHosts checks parsed hosts against want, or err against wantErr.
func checkHosts(t *testing.T, hs []node.Host, err error, want []node.Host, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("got %v, %v; want error %q", hs, err, wantErr)
		}
		return
	}
	if err != nil || !reflect.DeepEqual(hs, want) {
		t.Errorf("got %v, %v; want %v", hs, err, want)
	}
}
