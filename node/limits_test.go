package node

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pmrun/pmrun/internal/fuzzconn"
)

// TestLimitsNameTheirKnobs: each limit of what an agent reads from others
// refuses what is over it with an error that says which limit and how to
// change it.
func TestLimitsNameTheirKnobs(t *testing.T) {
	req := framedRequest(`{"op":"job","job":"j","spec":{"env":["X=` + strings.Repeat("x", 2000) + `"]}}`)
	_, errReq := readRequest(fuzzconn.New(req), 1<<10)
	var ev event
	errEv := newJSONStream(fuzzconn.New([]byte(`{"ev":"exit","msg":"`+strings.Repeat("y", 70<<10)+`"}`)), 1<<10).read(&ev)
	bundle := bundleOf(t, []tar.Header{{Name: "f", Typeflag: tar.TypeReg}}, []string{strings.Repeat("f", 4<<10)})
	errBundle := extractBundle(bytes.NewReader(bundle), t.TempDir(), 1<<10)
	announced := binary.BigEndian.AppendUint64(nil, 1<<40)
	errAnnounced := receiveBundle(bytes.NewReader(announced), t.TempDir(), 1<<20)
	_, errMeta := decodeMeta([]byte(`{"c":7947,"l":{"a":"`+strings.Repeat("z", 600)+`"}}`), 0)
	for _, tc := range []struct {
		name string
		err  error
		is   error
		knob string
	}{
		{"request", errReq, ErrRequestLarge, "--max-request"},
		{"event", errEv, ErrRequestLarge, "PMRUN_MAX_REQUEST"},
		{"bundle", errBundle, ErrBundleLarge, "--max-bundle"},
		{"announced bundle", errAnnounced, ErrBundleLarge, "PMRUN_MAX_BUNDLE"},
		{"metadata", errMeta, nil, "--max-meta"},
	} {
		if tc.err == nil || tc.is != nil && !errors.Is(tc.err, tc.is) || !strings.Contains(tc.err.Error(), tc.knob) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, tc.err, tc.knob)
		}
	}
	if _, err := StartAgent(AgentConfig{Bind: "127.0.0.1:0", WorkDir: t.TempDir(), MaxBundle: -1}); err == nil || !strings.Contains(err.Error(), "MaxBundle -1") {
		t.Errorf("a negative MaxBundle: %v, want it refused", err)
	}
}

// TestAgentMaxRequest: a job whose request is over the agent's MaxRequest
// fails with the agent's reason, naming the knob; one under it runs.
func TestAgentMaxRequest(t *testing.T) {
	a, err := StartAgent(AgentConfig{Name: "small", Bind: "127.0.0.1:0", Key: "k", WorkDir: t.TempDir(),
		MaxRequest: 4 << 10, Logf: testLogf(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := ClusterSpec{JobSpec: JobSpec{Program: "true", NP: 1, Env: []string{"BIG=" + strings.Repeat("b", 8<<10)}},
		Hosts: []Host{{Addr: a.ControlAddr()}}, Key: "k"}
	var out, errb bytes.Buffer
	res, err := RunCluster(ctx, spec, &out, &errb)
	if err == nil && res.ExitCode == 0 {
		t.Fatalf("a request over MaxRequest ran")
	}
	got := errb.String() + res.Reason
	if err != nil {
		got += err.Error()
	}
	t.Logf("the launcher says: %s", got)
	if !strings.Contains(got, "--max-request") {
		t.Errorf("the job's failure does not name --max-request: %v\n%s", res.Reason, got)
	}
	spec.Env = []string{"SMALL=1"}
	if res, err := RunCluster(ctx, spec, &out, &errb); err != nil || res.ExitCode != 0 {
		t.Errorf("a request under MaxRequest: status %d, %v", res.ExitCode, err)
	}
}
