package dockerx

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pmrun/pmrun/internal/e2e"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testLabel is the label key on everything the tests create; its value is
// unique per test.
const testLabel = "pmrun.test"

// engineTimeout bounds each test against the engine.
const engineTimeout = 3 * time.Minute

// requireEngine returns an Engine, or skips the test when no engine answers;
// with PMRUN_E2E=1 it fails instead.
func requireEngine(t *testing.T) Engine {
	t.Helper()
	ok, why := Available()
	e2e.RequireDocker(t, ok, "no Docker engine answers: "+why)
	e, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// uniqueSuffix returns a random name suffix, so runs never collide.
func uniqueSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// cleanupLabel removes everything labelled testLabel=value when the test
// ends, even when it failed, and checks that nothing is left.
func cleanupLabel(t *testing.T, e Engine, value string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := Cleanup(ctx, e, testLabel, value); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		cs, ns, err := e.Labeled(ctx, testLabel, value)
		if err != nil || len(cs)+len(ns) != 0 {
			t.Errorf("after cleanup: containers %v, networks %v, err %v", cs, ns, err)
		}
	})
}

// removeImageAtEnd removes image ref when the test ends.
func removeImageAtEnd(t *testing.T, e Engine, ref string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.RemoveImage(ctx, ref); err != nil {
			t.Errorf("remove image: %v", err)
		}
		if ok, err := e.ImageExists(ctx, ref); ok || err != nil {
			t.Errorf("image %s still exists after RemoveImage (err %v)", ref, err)
		}
	})
}

// waitFor polls cond every 100 ms until it holds, failing the test after
// timeout.
func waitFor(t *testing.T, ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("gave up waiting %v for %s", timeout, what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// buildProbe compiles testdata/probe into a static binary and returns its path.
func buildProbe(t *testing.T, ctx context.Context) string {
	t.Helper()
	gobin, err := exec.LookPath("go") // go test puts its own GOROOT/bin first in PATH
	if err != nil {
		t.Fatalf("no go command to build the probe: %v", err)
	}
	out := filepath.Join(t.TempDir(), "probe")
	cmd := exec.CommandContext(ctx, gobin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./testdata/probe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the probe: %v\n%s", err, b)
	}
	return out
}

const probeDockerfile = `FROM scratch
ARG PROBE_VERSION=none
LABEL pmrun.probe.version=$PROBE_VERSION
COPY bin/ /
ENTRYPOINT ["/probe"]
`

// TestEngine runs the whole life of a job against the engine: build an image,
// start two containers on a network, let them reach each other, disconnect,
// kill, read logs, and clean up.
func TestEngine(t *testing.T) {
	e := requireEngine(t)
	ctx, cancel := context.WithTimeout(t.Context(), engineTimeout)
	defer cancel()
	if err := e.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	suffix := uniqueSuffix(t)
	labels := map[string]string{testLabel: suffix}
	cleanupLabel(t, e, suffix)

	// Image.
	tag := "pmrun-dockerx-test:" + suffix
	if ok, err := e.ImageExists(ctx, tag); ok || err != nil {
		t.Fatalf("ImageExists(%s) before the build = %v, %v; want false, nil", tag, ok, err)
	}
	bctx, err := BuildContext(map[string]string{"bin/probe": buildProbe(t, ctx)},
		map[string][]byte{"Dockerfile.probe": []byte(probeDockerfile)})
	if err != nil {
		t.Fatal(err)
	}
	removeImageAtEnd(t, e, tag)
	start := time.Now()
	var log bytes.Buffer
	if err := e.BuildImage(ctx, bctx, "Dockerfile.probe", tag, map[string]string{"PROBE_VERSION": "7"}, labels, &log); err != nil {
		t.Fatalf("BuildImage: %v\n%s", err, log.String())
	}
	t.Logf("built %s in %v", tag, time.Since(start).Round(time.Millisecond))
	if !strings.Contains(log.String(), "Step 1/6 : FROM scratch") || !strings.Contains(log.String(), "Successfully tagged "+tag) {
		t.Errorf("build log lacks the classic builder's steps:\n%s", log.String())
	}
	if ok, err := e.ImageExists(ctx, tag); !ok || err != nil {
		t.Fatalf("ImageExists(%s) = %v, %v; want true, nil", tag, ok, err)
	}
	id, err := e.ImageID(ctx, tag)
	if err != nil || !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("ImageID(%s) = %q, %v; want sha256:..., nil", tag, id, err)
	}
	if byID, err := e.ImageID(ctx, id); byID != id || err != nil {
		t.Errorf("ImageID(%s) = %q, %v; want itself", id, byID, err)
	}
	if none, err := e.ImageID(ctx, tag+"-none"); none != "" || err != nil {
		t.Errorf("ImageID of a missing image = %q, %v; want \"\", nil", none, err)
	}
	alias := "pmrun-dockerx-test-alias:" + suffix
	removeImageAtEnd(t, e, alias)
	if err := e.TagImage(ctx, tag, alias); err != nil {
		t.Fatal(err)
	}
	if ok, err := e.ImageExists(ctx, alias); !ok || err != nil {
		t.Fatalf("ImageExists(%s) after TagImage = %v, %v; want true, nil", alias, ok, err)
	}
	if err := e.TagImage(ctx, tag, "Bad Name"); err == nil || !strings.Contains(err.Error(), "Bad Name") {
		t.Errorf("TagImage to an invalid name: %v, want an error naming it", err)
	}

	// Network.
	netName := "pmrun-dockerx-test-" + suffix
	netID, err := e.CreateNetwork(ctx, netName, labels)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateNetwork(ctx, netName, labels); err == nil {
		t.Errorf("a second CreateNetwork(%s) succeeded", netName)
	}

	// Two containers: a serves, b dials a by its alias and by its address.
	run := func(host string, init bool, publish map[int]string, args ...string) string {
		t.Helper()
		id, err := e.RunContainer(ctx, ContainerSpec{
			Publish:  publish,
			Name:     "pmrun-dockerx-test-" + suffix + "-" + host,
			Hostname: host,
			Image:    tag,
			Cmd:      args,
			Env:      []string{"PMRUN_TEST=1"},
			Network:  netName,
			Labels:   labels,
			Init:     init,
		})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a := run("a", true, map[int]string{7000: "127.0.0.1"})
	ipA, err := e.ContainerIP(ctx, a, netName)
	if err != nil {
		t.Fatal(err)
	}
	if byID, err := e.ContainerIP(ctx, a, netID); err != nil || byID != ipA {
		t.Errorf("ContainerIP by network ID = %q, %v; by name %q", byID, err, ipA)
	}
	published, err := e.PublishedPort(ctx, a, 7000)
	if err != nil || !strings.HasPrefix(published, "127.0.0.1:") {
		t.Fatalf("PublishedPort(a, 7000) = %q, %v; want 127.0.0.1:PORT", published, err)
	}
	if p, err := e.PublishedPort(ctx, a, 7001); err == nil {
		t.Errorf("PublishedPort of a port not published = %q, want an error", p)
	}
	b := run("b", false, nil, "a:7000", ipA+":7000")
	for _, id := range []string{a, b} {
		if ok, err := e.ContainerRunning(ctx, id); !ok || err != nil {
			t.Fatalf("ContainerRunning(%.12s) = %v, %v; want true, nil", id, ok, err)
		}
	}
	waitFor(t, ctx, 30*time.Second, "b to reach a by alias and address", func() (bool, error) {
		logs, err := e.ContainerLogs(ctx, b)
		if strings.Contains(logs, "gave up") {
			return false, fmt.Errorf("b gave up:\n%s", logs)
		}
		return strings.Contains(logs, "reached a:7000: a\n") && strings.Contains(logs, "reached "+ipA+":7000: a\n"), err
	})
	// The host reaches a at its published port.
	waitFor(t, ctx, 30*time.Second, "the host to reach a at "+published, func() (bool, error) {
		c, err := net.DialTimeout("tcp", published, time.Second)
		if err != nil {
			return false, nil
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(io.LimitReader(c, 256))
		return string(got) == "a\n", nil
	})

	cs, ns, err := e.Labeled(ctx, testLabel, suffix)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{a, b}
	slices.Sort(cs)
	slices.Sort(want)
	if !slices.Equal(cs, want) || !slices.Equal(ns, []string{netID}) {
		t.Errorf("Labeled = %v, %v; want %v, [%s]", cs, ns, want, netID)
	}

	// Disconnect and kill a.
	if err := e.DisconnectNetwork(ctx, netName, a); err != nil {
		t.Fatal(err)
	}
	if ip, err := e.ContainerIP(ctx, a, netName); err == nil {
		t.Errorf("ContainerIP after DisconnectNetwork = %s, want an error", ip)
	}
	if err := e.KillContainer(ctx, a); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, 10*time.Second, "a to stop", func() (bool, error) {
		ok, err := e.ContainerRunning(ctx, a)
		return !ok, err
	})
	if err := e.KillContainer(ctx, a); err != nil {
		t.Errorf("KillContainer of a stopped container: %v", err)
	}
	logs, err := e.ContainerLogs(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs, "stdout a\n") || !strings.Contains(logs, "stderr a\n") {
		t.Errorf("logs of a lack its stdout or stderr line:\n%q", logs)
	}

	// Clean up by label, twice.
	if err := Cleanup(ctx, e, testLabel, suffix); err != nil {
		t.Fatal(err)
	}
	if cs, ns, err := e.Labeled(ctx, testLabel, suffix); err != nil || len(cs)+len(ns) != 0 {
		t.Fatalf("after Cleanup: containers %v, networks %v, err %v", cs, ns, err)
	}
	if err := Cleanup(ctx, e, testLabel, suffix); err != nil {
		t.Errorf("second Cleanup: %v", err)
	}
	if ok, err := e.ContainerRunning(ctx, b); ok || err != nil {
		t.Errorf("ContainerRunning of a removed container = %v, %v; want false, nil", ok, err)
	}
	if err := e.RemoveContainer(ctx, b); err != nil {
		t.Errorf("RemoveContainer of a removed container: %v", err)
	}
	if err := e.RemoveNetwork(ctx, netID); err != nil {
		t.Errorf("RemoveNetwork of a removed network: %v", err)
	}
}

// TestRunContainerStartFails checks that a container that cannot start is
// not left behind.
func TestRunContainerStartFails(t *testing.T) {
	e := requireEngine(t)
	ctx, cancel := context.WithTimeout(t.Context(), engineTimeout)
	defer cancel()
	suffix := uniqueSuffix(t)
	cleanupLabel(t, e, suffix)
	tag := "pmrun-dockerx-test:" + suffix
	bctx, err := BuildContext(nil, map[string][]byte{"Dockerfile": []byte("FROM scratch\nCOPY Dockerfile /\n")})
	if err != nil {
		t.Fatal(err)
	}
	removeImageAtEnd(t, e, tag)
	if err := e.BuildImage(ctx, bctx, "", tag, nil, map[string]string{testLabel: suffix}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = e.RunContainer(ctx, ContainerSpec{Image: tag, Entrypoint: []string{"/no-such-program"}, Labels: map[string]string{testLabel: suffix}})
	if err == nil || !strings.Contains(err.Error(), "no-such-program") {
		t.Fatalf("RunContainer of a missing program: %v", err)
	}
	if cs, _, err := e.Labeled(ctx, testLabel, suffix); err != nil || len(cs) != 0 {
		t.Errorf("after a failed start: containers %v, err %v", cs, err)
	}
}

// TestBuildImageFails checks that a failing step yields a *BuildError that
// names the step and holds the builder's message.
func TestBuildImageFails(t *testing.T) {
	e := requireEngine(t)
	ctx, cancel := context.WithTimeout(t.Context(), engineTimeout)
	defer cancel()
	suffix := uniqueSuffix(t)
	tag := "pmrun-dockerx-test:" + suffix
	removeImageAtEnd(t, e, tag)
	bctx, err := BuildContext(nil, map[string][]byte{"Dockerfile": []byte("FROM scratch\nCOPY no-such-file /\n")})
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	err = e.BuildImage(ctx, bctx, "", tag, nil, nil, &log)
	var be *BuildError
	if !errors.As(err, &be) {
		t.Fatalf("BuildImage = %v, want a *BuildError", err)
	}
	if be.Step != "Step 2/2 : COPY no-such-file /" || !strings.Contains(be.Message, "no-such-file") {
		t.Errorf("BuildError step %q, message %q", be.Step, be.Message)
	}
	if ok, err := e.ImageExists(ctx, tag); ok || err != nil {
		t.Errorf("ImageExists after a failed build = %v, %v", ok, err)
	}
}

func TestAvailableWithoutEngine(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "no.sock"))
	ok, why := Available()
	if ok || why == "" {
		t.Fatalf("Available() = %v, %q; want false and a reason", ok, why)
	}
}

// buildStream encodes builder messages as the engine sends them.
func buildStream(msgs ...string) io.Reader {
	return strings.NewReader(strings.Join(msgs, "\r\n"))
}

func TestReadBuildOutput(t *testing.T) {
	var long []string
	for i := range 2*outputTail + 5 {
		long = append(long, fmt.Sprintf(`{"stream":"line %d\n"}`, i))
	}
	tests := []struct {
		name    string
		stream  io.Reader
		log     bool
		wantErr string // "" means success
		step    string
		output  string
	}{
		{
			name: "ok",
			stream: buildStream(`{"stream":"Step 1/1 : FROM scratch\n"}`, `{"stream":" ---\u003e \n"}`,
				`{"aux":{"ID":"sha256:abc"}}`, `{"stream":"Successfully built abc\n"}`),
			log: true,
		},
		{
			name:   "aux only",
			stream: buildStream(`{"aux":{"ID":"sha256:abc"}}`),
		},
		{
			name:    "no image",
			stream:  buildStream(`{"stream":"Step 1/1 : FROM scratch\n"}`),
			wantErr: "without reporting an image",
		},
		{
			name: "failed step",
			stream: buildStream(`{"stream":"Step 1/2 : FROM base\n"}`, `{"stream":"Step 2/2 : RUN make\n"}`,
				`{"stream":"cc: err"}`, `{"stream":"or 1\n"}`,
				`{"errorDetail":{"code":2,"message":"returned a non-zero code: 2"},"error":"returned a non-zero code: 2"}`),
			wantErr: "dockerx: build t: Step 2/2 : RUN make: returned a non-zero code: 2\ncc: error 1",
			step:    "Step 2/2 : RUN make",
			output:  "cc: error 1",
		},
		{
			name:    "failed step with log",
			stream:  buildStream(`{"stream":"Step 1/1 : RUN make\n"}`, `{"stream":"oops\n"}`, `{"errorDetail":{"message":"bad"}}`),
			log:     true,
			wantErr: "dockerx: build t: Step 1/1 : RUN make: bad",
			step:    "Step 1/1 : RUN make",
		},
		{
			name:    "old error field only",
			stream:  buildStream(`{"error":"bad"}`),
			wantErr: "dockerx: build t: bad",
		},
		{
			name:    "long output",
			stream:  buildStream(append(append([]string{`{"stream":"Step 1/1 : RUN x\n"}`}, long...), `{"errorDetail":{"message":"bad"}}`)...),
			wantErr: "line 44",
			step:    "Step 1/1 : RUN x",
			output: strings.Join(func() (s []string) {
				for i := 2*outputTail + 5 - outputTail; i < 2*outputTail+5; i++ {
					s = append(s, fmt.Sprintf("line %d", i))
				}
				return s
			}(), "\n"),
		},
		{
			name:    "garbage",
			stream:  strings.NewReader(`{"stream":`),
			wantErr: "reading the builder's output",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			var w io.Writer
			if tt.log {
				w = &log
			}
			err := readBuildOutput(tt.stream, "t", w)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
			var be *BuildError
			if errors.As(err, &be) && (be.Step != tt.step || be.Output != tt.output) {
				t.Errorf("step %q, output %q; want %q, %q", be.Step, be.Output, tt.step, tt.output)
			}
			if tt.log && !strings.Contains(log.String(), tt.step) {
				t.Errorf("log %q lacks the step", log.String())
			}
		})
	}
}

func TestBuildContext(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode, data string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("tool", 0o755, "#!tool")
	write("tree/a.txt", 0o600, "a")
	write("tree/sub/b.txt", 0o644, "bb")
	if err := os.Symlink("a.txt", filepath.Join(dir, "tree", "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("tool", filepath.Join(dir, "toollink")); err != nil {
		t.Fatal(err)
	}

	r, err := BuildContext(
		map[string]string{"bin/tool": filepath.Join(dir, "tool"), "src": filepath.Join(dir, "tree"), "t2": filepath.Join(dir, "toollink")},
		map[string][]byte{"Dockerfile": []byte("FROM scratch\n"), "etc/x.conf": nil},
	)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		typ  byte
		mode int64
		data string
		link string
	}
	got := map[string]entry{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner %d:%d %q:%q, want root", h.Name, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = entry{h.Typeflag, h.Mode & 0o7777, string(b), h.Linkname}
	}
	want := map[string]entry{
		"bin/tool":      {tar.TypeReg, 0o755, "#!tool", ""},
		"src/":          {tar.TypeDir, 0o755, "", ""},
		"src/a.txt":     {tar.TypeReg, 0o600, "a", ""},
		"src/link":      {tar.TypeSymlink, 0o777, "", "a.txt"},
		"src/sub/":      {tar.TypeDir, 0o755, "", ""},
		"src/sub/b.txt": {tar.TypeReg, 0o644, "bb", ""},
		"t2":            {tar.TypeReg, 0o755, "#!tool", ""},
		"Dockerfile":    {tar.TypeReg, 0o644, "FROM scratch\n", ""},
		"etc/x.conf":    {tar.TypeReg, 0o644, "", ""},
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("%s: got %+v (present %v), want %+v", name, g, ok, w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected entry %s", name)
		}
	}

	for _, tt := range []struct {
		name  string
		files map[string]string
		extra map[string][]byte
	}{
		{"absolute", nil, map[string][]byte{"/etc/x": nil}},
		{"escapes", nil, map[string][]byte{"a/../../x": nil}},
		{"empty", nil, map[string][]byte{"": nil}},
		{"dot", map[string]string{".": dir}, nil},
		{"twice", map[string]string{"src": filepath.Join(dir, "tree")}, map[string][]byte{"src/a.txt": nil}},
		{"missing", map[string]string{"x": filepath.Join(dir, "missing")}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := BuildContext(tt.files, tt.extra); err == nil || !strings.HasPrefix(err.Error(), "dockerx: ") {
				t.Errorf("BuildContext = %v, want a dockerx error", err)
			}
		})
	}
}

// TestForEach checks that ForEach runs at most limit calls at a time, and
// starts none after one failed.
func TestForEach(t *testing.T) {
	const n, limit = 40, 8
	var (
		mu              sync.Mutex
		running, most   int
		calls           int
		release         = make(chan struct{})
		full            = make(chan struct{}, 1)
		errFirstRelease = errors.New("the first call released fails")
	)
	done := make(chan error, 1)
	go func() {
		done <- ForEach(context.Background(), n, limit, func(ctx context.Context, i int) error {
			mu.Lock()
			running++
			calls++
			most = max(most, running)
			if running == limit {
				select {
				case full <- struct{}{}:
				default:
				}
			}
			mu.Unlock()
			<-release
			mu.Lock()
			running--
			mu.Unlock()
			return errFirstRelease
		})
	}()
	<-full
	close(release)
	if err := <-done; !errors.Is(err, errFirstRelease) {
		t.Errorf("ForEach returned %v, want the calls' error", err)
	}
	if most != limit {
		t.Errorf("%d calls ran at once, want %d", most, limit)
	}
	// After the first error at most the limit's worth more may have started.
	if calls > 2*limit {
		t.Errorf("%d calls made, want no more than %d after an error", calls, 2*limit)
	}
}
