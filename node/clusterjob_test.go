package node

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/pmrun/pmrun/internal/ctl"
	"github.com/pmrun/pmrun/internal/wire"
)

// fakeAgent is a control service that lists itself as a node of one core
// and answers a job request with job(st): enough of an agent to take part in
// a job's submission.
func fakeAgent(t *testing.T, name, key string, job func(st net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv, err := ctl.NewServer(ln, ctl.ServerConfig{
		Secret: controlSecret(key), Role: wire.RoleControl, RoleName: "a control connection", Timing: ctl.NodeTiming(),
		Handle: func(_ *yamux.Session, _ uint32, st net.Conn) {
			defer st.Close()
			req, err := readRequest(st, 0)
			if err != nil {
				return
			}
			switch req.Op {
			case "members":
				self := Member{Name: name, Control: addr, Cores: 1, State: "alive"}
				json.NewEncoder(st).Encode(membersReply{Self: name, Members: []Member{self}})
			case "job":
				job(st)
			}
		},
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return addr
}

// TestSubmitFailureCancelsOthers: when one node refuses its part of a job,
// the submissions still waiting on the other nodes (here one that never
// gets ready) are cancelled, and the job fails with the refusal.
func TestSubmitFailureCancelsOthers(t *testing.T) {
	cancelled := make(chan struct{})
	slow := fakeAgent(t, "a-slow", "k", func(st net.Conn) {
		json.NewEncoder(st).Encode(event{Ev: "accepted"})
		io.Copy(io.Discard, st) // until the launcher closes the session
		close(cancelled)
	})
	failing := fakeAgent(t, "b-failing", "k", func(st net.Conn) {
		time.Sleep(50 * time.Millisecond) // let the slow node's submission start waiting
		json.NewEncoder(st).Encode(event{Ev: "error", Msg: "node b-failing: no room"})
	})
	spec := ClusterSpec{JobSpec: JobSpec{Program: "/bin/true", NP: 2}, Key: "k",
		Hosts: []Host{{Addr: slow, Slots: 1}, {Addr: failing, Slots: 1}}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	var errb syncBuffer
	go func() {
		res, err := RunCluster(ctx, spec, &bytes.Buffer{}, &errb)
		done <- outcome{res, err}
	}()
	var o outcome
	select {
	case o = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("RunCluster still waits for the slow node after the other refused the job")
	}
	if o.err != nil || o.res.ExitCode != ExitLaunch || !strings.Contains(o.res.Reason, "no room") {
		t.Errorf("got %+v, %v; want ExitLaunch for the refusal", o.res, o.err)
	}
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Error("the slow node's session was not closed")
	}
	if !strings.Contains(errb.String(), "no room") {
		t.Errorf("stderr %q does not say why", errb.String())
	}
}

// TestConnectTimeoutField: a negative ConnectTimeout is refused, naming it.
func TestConnectTimeoutField(t *testing.T) {
	spec := ClusterSpec{JobSpec: JobSpec{Program: "/bin/true", NP: 1}, Hosts: []Host{{Addr: "127.0.0.1:1"}}, ConnectTimeout: -time.Second}
	if _, err := RunCluster(context.Background(), spec, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "ConnectTimeout") {
		t.Errorf("got %v, want an error naming ConnectTimeout", err)
	}
}
