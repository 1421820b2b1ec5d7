package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pmrun/pmrun/internal/tasktest"
)

// BenchmarkWorkerRoundTrip: one call frame to the stand-in worker and its
// reply back, by three paths side by side: straight on the worker's socket
// (no relay), through a local hub (client -> hub -> worker), and through a
// hub and an agent (client -> hub -> yamux -> agent -> worker). The
// differences are what the relays cost.
//
//	go test -run '^$' -bench WorkerRoundTrip -benchtime 2000x ./node
func BenchmarkWorkerRoundTrip(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	env := append(os.Environ(), tasktest.EnvStandIn+"=1")
	paths := []struct {
		name string
		open func(b *testing.B) net.Conn
	}{
		{"direct", func(b *testing.B) net.Conn {
			started := make(chan *taskWorker, 1)
			p, err := startPool(poolConfig{Node: "b", N: 1, Cmd: []string{exe}, Env: env, Logf: b.Logf,
				Started: func(w *taskWorker) { started <- w }})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(p.Close)
			return (<-started).conn
		}},
		{"hub", func(b *testing.B) net.Conn { return benchHub(b, HubConfig{Workers: 1}, exe) }},
		{"hub+agent", func(b *testing.B) net.Conn {
			a, err := StartAgent(AgentConfig{Name: "b0", Bind: "127.0.0.1:0", WorkDir: b.TempDir(), Logf: func(string, ...any) {}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { a.Close() })
			return benchHub(b, HubConfig{Workers: 1, Cluster: []string{a.ControlAddr()}}, exe)
		}},
	}
	for _, path := range paths {
		for _, size := range []int{8, 64 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("%s/bytes=%d", path.name, size), func(b *testing.B) {
				c := path.open(b)
				if kind, _, err := tasktest.ReadFrame(c); kind != 'H' || err != nil {
					b.Fatalf("hello %q %v", kind, err)
				}
				frame := tasktest.Frame(nil, 'C', bytes.Repeat([]byte{7}, size))
				reply := make([]byte, len(frame))
				b.SetBytes(int64(2 * len(frame)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.Write(frame); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(c, reply); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// benchHub runs a hub of the stand-in (exe) and returns a client's
// connection to its first worker, hello unread.
func benchHub(b *testing.B, cfg HubConfig, exe string) net.Conn {
	pr, pw := io.Pipe()
	cfg.WorkerCmd, cfg.Env = []string{exe}, []string{tasktest.EnvStandIn + "=1"}
	cfg.Socket = filepath.Join(b.TempDir(), "hub.sock")
	cfg.Events, cfg.Stderr = pw, io.Discard
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		RunHub(ctx, cfg)
		pw.Close()
		close(done)
	}()
	events := make(chan string, 10)
	go func() {
		defer close(events)
		buf := make([]byte, 4096)
		var all []byte
		for {
			n, err := pr.Read(buf)
			all = append(all, buf[:n]...)
			for {
				i := bytes.IndexByte(all, '\n')
				if i < 0 {
					break
				}
				events <- string(all[:i])
				all = all[i+1:]
			}
			if err != nil {
				return
			}
		}
	}()
	b.Cleanup(func() {
		cancel()
		<-done
		for range events {
		}
	})
	var id string
	timeout := time.After(30 * time.Second)
	for id == "" {
		select {
		case ev := <-events:
			if _, rest, ok := bytes.Cut([]byte(ev), []byte(`"id":"`)); ok {
				id = string(rest[:bytes.IndexByte(rest, '"')])
			}
		case <-timeout:
			b.Fatal("no worker in 30 s")
		}
	}
	c, err := net.Dial("unix", cfg.Socket)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	io.WriteString(c, id+"\n")
	return c
}
