package node

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLongLinesKeptWhole: a line of a megabyte from each of two ranks
// reaches the output whole, not cut into pieces mixed with the other's.
func TestLongLinesKeptWhole(t *testing.T) {
	// A rank's line arrives in pieces (tr writes it a few KiB at a time), and
	// on a loaded machine a pause between two may pass the 100 ms a partial
	// line waits: wait longer here, as the property is whole lines.
	old := flushDelay.Swap(int64(10 * time.Second))
	t.Cleanup(func() { flushDelay.Store(old) })
	const n = 1000000
	prog, args := sh(fmt.Sprintf(`head -c %d /dev/zero | tr '\0' "$PMRUN_RANK"; echo`, n))
	res, out, _ := run(t, JobSpec{Program: prog, Args: args, NP: 2})
	lines := strings.Split(out, "\n")
	if res.ExitCode != 0 || len(lines) != 3 || lines[2] != "" {
		t.Fatalf("status %d, %d lines (want 2)", res.ExitCode, len(lines)-1)
	}
	for _, l := range lines[:2] {
		if len(l) != n || strings.Trim(l, l[:1]) != "" {
			t.Errorf("a line of %d bytes mixes ranks or was cut (want %d bytes of one digit)", len(l), n)
		}
	}
}

// TestOverlongLineUnchanged: a line longer than any buffer is written in
// pieces, but without a byte added; and the output's end stays without a
// newline, as the rank wrote it.
func TestOverlongLineUnchanged(t *testing.T) {
	prog, args := sh(`head -c 3000000 /dev/zero | tr '\0' x; echo; printf tail`)
	res, out, _ := run(t, JobSpec{Program: prog, Args: args, NP: 1})
	if want := strings.Repeat("x", 3000000) + "\ntail"; res.ExitCode != 0 || out != want {
		t.Fatalf("status %d, %d bytes (want %d), ends %q", res.ExitCode, len(out), len(want), out[max(0, len(out)-10):])
	}
	for _, tag := range []bool{false, true} {
		prog, args = sh(`printf 'a\nb'`)
		_, out, _ = run(t, JobSpec{Program: prog, Args: args, NP: 1, TagOutput: tag})
		if want := map[bool]string{false: "a\nb", true: "[0] a\n[0] b"}[tag]; out != want {
			t.Errorf("tag %v: output %q, want %q", tag, out, want)
		}
	}
}

// watchedBuffer is a buffer that tells when it holds a string.
type watchedBuffer struct {
	mu   sync.Mutex // guards b
	b    bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (w *watchedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if strings.Contains(w.b.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return len(p), nil
}

func (w *watchedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// answerPrompt runs job with a pipe as its stdin, types answer into it
// once out shows prompt, and returns the job's result and output. The job
// must end by itself once it has read answer: its stdin stays open.
func answerPrompt(t *testing.T, prompt, answer string, job func(stdin io.Reader, out io.Writer) (Result, error)) (Result, string) {
	t.Helper()
	in, typing, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	defer typing.Close()
	out := &watchedBuffer{want: prompt, seen: make(chan struct{})}
	done := make(chan Result, 1)
	go func() {
		res, err := job(in, out)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	select {
	case <-out.seen:
		typing.WriteString(answer)
	case <-time.After(30 * time.Second):
		t.Errorf("no prompt after 30 s while the rank waits for input; output %q", out.String())
		typing.Close()
	}
	select {
	case res := <-done:
		return res, out.String()
	case <-time.After(30 * time.Second):
		typing.Close()
		res := <-done
		t.Errorf("the job did not end after rank 0 read its answer; output %q", out.String())
		return res, out.String()
	}
}

// TestPromptShownBeforeInput: a partial line (a prompt) reaches the output
// while its rank waits for input, not only when the line is ended.
func TestPromptShownBeforeInput(t *testing.T) {
	prog, args := sh(`[ "$PMRUN_RANK" = 0 ] || exit 0; printf 'prompt> '; read answer; echo "got $answer"`)
	res, out := answerPrompt(t, "prompt> ", "yes\n", func(stdin io.Reader, out io.Writer) (Result, error) {
		return RunLocal(t.Context(), JobSpec{Program: prog, Args: args, NP: 2, Stdin: stdin}, out, os.Stderr)
	})
	if res.ExitCode != 0 || out != "prompt> got yes\n" {
		t.Errorf("status %d, output %q", res.ExitCode, out)
	}
}

// TestInterruptedLines: how one sink writes two streams' pieces when one's
// line is interrupted by the other's output: unchanged without tags; with
// tags, the interrupted line is ended and continues on a new tagged line.
func TestInterruptedLines(t *testing.T) {
	for _, c := range []struct {
		tag  bool
		want string
	}{
		{false, "par" + "line\n" + "tial\nnext\n"},
		{true, "[0] par\n" + "[1] line\n" + "[0] tial\n[0] next\n"},
	} {
		var b bytes.Buffer
		sink := &lineSink{w: &b}
		a, o := &outStream{sink: sink}, &outStream{sink: sink}
		if c.tag {
			a.prefix, o.prefix = []byte("[0] "), []byte("[1] ")
		}
		a.write([]byte("par"))
		o.write([]byte("line\n"))
		a.write([]byte("tial\nnext\n"))
		if b.String() != c.want {
			t.Errorf("tag %v: %q, want %q", c.tag, b.String(), c.want)
		}
	}
}
