package comm

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestConfigFromEnvBadValues sets each variable ConfigFromEnv reads to a
// malformed or out-of-range value: the error must name the variable.
func TestConfigFromEnvBadValues(t *testing.T) {
	for _, tc := range []struct{ name, value string }{
		{"PMRUN_EAGER_LIMIT", "lots"},
		{"PMRUN_EAGER_LIMIT", "64m"}, // above 16 MiB
		{"PMRUN_SHM_EAGER_LIMIT", "-1"},
		{"PMRUN_SHM_EAGER_LIMIT", "17m"},
		{"PMRUN_SHM_EAGER_POINT", "-4k"},
		{"PMRUN_SHM_EAGER_POINT", "32m"},
		{"PMRUN_CHUNK_SIZE", "4g"},
		{"PMRUN_CHUNK_SIZE", "1k"}, // below 4 KiB
		{"PMRUN_COMPRESS_MIN", "1.5k"},
		{"PMRUN_SOCKET_BUFFER", "big"},
		{"PMRUN_SHM_RING", "x"},
		{"PMRUN_SHM_RING", "96k"}, // not a power of two
		{"PMRUN_UNEXPECTED_ARENA", "2048m"},
		{"PMRUN_UNEXPECTED_ARENA", "k"},
		{"PMRUN_SPIN", "10"}, // no unit
		{"PMRUN_SPIN", "2s"}, // above 1s
		{"PMRUN_CONNECT_TIMEOUT", "soon"},
		{"PMRUN_CONNECT_TIMEOUT", "-5s"},
		{"PMRUN_CONNECT_TIMEOUT", "0s"},
		{"PMRUN_JOIN_TIMEOUT", "later"},
		{"PMRUN_JOIN_TIMEOUT", "0s"},
		{"PMRUN_CLOSE_TIMEOUT", "-1m"},
		{"PMRUN_CLOSE_TIMEOUT", "60"}, // no unit
		{"PMRUN_SPIN_YIELD", "maybe"},
		{"PMRUN_LOCKED_CALLERS", "2"},
		{"PMRUN_SHM", "enabled"},
		{"PMRUN_COMPRESS", "zstd"},
		{"PMRUN_MAX_MESSAGE", "huge"},
		{"PMRUN_MAX_MESSAGE", "1k"}, // below the eager limit
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			t.Setenv(tc.name, tc.value)
			c, err := ConfigFromEnv()
			if err == nil {
				t.Fatalf("accepted, config %+v", c)
			}
			if !strings.Contains(err.Error(), tc.name) {
				t.Fatalf("error does not name %s: %v", tc.name, err)
			}
		})
	}
}

// TestConfigFromEnvGoodValues: well-formed values set their fields.
func TestConfigFromEnvGoodValues(t *testing.T) {
	t.Setenv("PMRUN_CONNECT_TIMEOUT", "90s")
	t.Setenv("PMRUN_SHM_RING", "256k")
	t.Setenv("PMRUN_SHM", "off")
	t.Setenv("PMRUN_JOIN_TIMEOUT", "5m")
	t.Setenv("PMRUN_CLOSE_TIMEOUT", "3s")
	t.Setenv("PMRUN_MAX_MESSAGE", "2g")
	c, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if c.DialTimeout.Seconds() != 90 || c.ShmRing != 256<<10 || c.SharedMemory ||
		c.JoinTimeout.Minutes() != 5 || c.CloseTimeout.Seconds() != 3 || c.MaxMessage != 2<<30 {
		t.Fatalf("config %+v", c)
	}
}

// TestDefaultTimeouts pins the documented defaults of the world's timeouts.
func TestDefaultTimeouts(t *testing.T) {
	c := DefaultConfig()
	if c.DialTimeout.Seconds() != 10 || c.JoinTimeout.Minutes() != 2 || c.CloseTimeout.Minutes() != 1 {
		t.Errorf("timeouts: dial %v, join %v, close %v; want 10s, 2m, 1m", c.DialTimeout, c.JoinTimeout, c.CloseTimeout)
	}
	for _, f := range []func(*Config){
		func(c *Config) { c.JoinTimeout = 0 },
		func(c *Config) { c.CloseTimeout = -time.Second },
	} {
		c := DefaultConfig()
		f(c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "Timeout") {
			t.Errorf("Validate() = %v, want an error naming the timeout", err)
		}
	}
}

// TestOversubscribedSimulatedNodes: nodes simulated on one machine (pmrun
// --ppn) count all the machine's ranks, not their node's, when deciding
// whether waiting ranks must yield their core.
func TestOversubscribedSimulatedNodes(t *testing.T) {
	over := strconv.Itoa(runtime.NumCPU() + 1)
	for _, tc := range []struct {
		local, host string
		want        bool
	}{{"1", "", false}, {over, "", true}, {"1", over, true}, {"1", "1", false}} {
		t.Setenv(EnvLocalSize, tc.local)
		t.Setenv(EnvHostSize, tc.host)
		if got := oversubscribed(); got != tc.want {
			t.Errorf("local size %s, host size %q: oversubscribed %v, want %v", tc.local, tc.host, got, tc.want)
		}
	}
}
