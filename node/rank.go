package node

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// rankProc is one rank process to start: the launcher on this machine and
// the agents describe their ranks with it and start them with startRank.
type rankProc struct {
	rank  int
	cmd   *exec.Cmd    // program, arguments, directory and environment set
	bind  *unix.CPUSet // the CPUs it may run on (nil: any)
	stdin io.Reader    // what it reads on its stdin, through a pipe (nil: nothing)
	// output consumes what the rank writes to fd (1 stdout, 2 stderr), until
	// r ends: when the rank and whatever inherited its pipes have exited.
	output func(fd int, r io.Reader)
	// streams are what output writes to, if it needs closing: they are
	// closed when the rank's pipes cannot be made, and when its forwarders
	// are cut off.
	streams []io.Closer
}

// startRank starts p with sp, which reports its exit on exits; the
// forwarders of its output run in outputs. A rank given stdin reads
// it through a pipe: stopStdin (nil for the others) ends that forwarding and
// waits for it where stdin can be interrupted (see pipeStdin).
func startRank(sp *spawner, p rankProc, outputs *forwarders, exits chan<- exitEvent) (stopStdin func(), err error) {
	closeAfterStart, err := pipeOutput(p.cmd, outputs, p.output, p.streams...)
	if err != nil {
		for _, c := range p.streams {
			c.Close()
		}
		return nil, fmt.Errorf("rank %d: output: %w", p.rank, err)
	}
	if p.stdin != nil {
		rd, stop, err := pipeStdin(p.cmd, p.stdin)
		if err != nil {
			for _, f := range closeAfterStart {
				f.Close() // ends the output forwarders
			}
			return nil, fmt.Errorf("rank %d: stdin: %w", p.rank, err)
		}
		closeAfterStart, stopStdin = append(closeAfterStart, rd), stop
	}
	err = sp.start(p.cmd, p.rank, p.bind, exits)
	for _, f := range closeAfterStart {
		f.Close()
	}
	if err != nil {
		if stopStdin != nil {
			stopStdin()
		}
		if a := p.cmd.SysProcAttr; a != nil && a.Credential != nil && errors.Is(err, fs.ErrPermission) {
			return nil, fmt.Errorf("rank %d: starting %s as the job's user (uid %d, --job-users): %w: the program, and every directory above it, must be readable by other users", p.rank, p.cmd.Args[0], a.Credential.Uid, err)
		}
		return nil, fmt.Errorf("rank %d: starting %s: %w", p.rank, p.cmd.Args[0], err)
	}
	return stopStdin, nil
}

// localOutput forwards a rank's output, line by line, to out (fd 1) and errs
// (fd 2), each line prefixed "[rank] " when tag is set.
func localOutput(tag bool, rank int, out, errs *lineSink) func(fd int, r io.Reader) {
	var prefix []byte
	if tag {
		prefix = []byte("[" + strconv.Itoa(rank) + "] ")
	}
	sinks := [...]*lineSink{out, errs}
	return func(fd int, r io.Reader) { forwardLines(r, sinks[fd-1], prefix) }
}

// pipeOutput gives cmd a pipe for its stdout (fd 1) and one for its stderr
// (fd 2) and runs consume on each read end in outputs, which may cut it off
// by closing the read end and also. It returns the write ends, which the
// caller closes once cmd has started (or failed to).
func pipeOutput(cmd *exec.Cmd, outputs *forwarders, consume func(fd int, r io.Reader), also ...io.Closer) ([]*os.File, error) {
	var ws []*os.File
	for fd := 1; fd <= 2; fd++ {
		pr, pw, err := os.Pipe()
		if err != nil {
			for _, w := range ws {
				w.Close()
			}
			return nil, err
		}
		if fd == 1 {
			cmd.Stdout = pw
		} else {
			cmd.Stderr = pw
		}
		ws = append(ws, pw)
		cut := []io.Closer{pr}
		if fd == 1 {
			cut = append(cut, also...)
		}
		outputs.goForward(func() {
			defer pr.Close()
			consume(fd, pr)
		}, cut...)
	}
	return ws, nil
}

// forwarders owns the goroutines that forward a job's output (and those that
// accept its output streams): they end by themselves when what they read
// ends, and drain cuts off those that do not.
type forwarders struct {
	wg  sync.WaitGroup
	mu  sync.Mutex  // guards cut
	cut []io.Closer // closing these ends the forwarders' reads and writes
}

// goForward runs f in a goroutine of its own; closing cs ends it.
func (o *forwarders) goForward(f func(), cs ...io.Closer) {
	o.mu.Lock()
	o.cut = append(o.cut, cs...)
	o.mu.Unlock()
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		f()
	}()
}

// waitFor waits until the forwarders have ended, or d has passed, and
// reports whether they have ended. Its helper goroutine lasts as long as the
// forwarders do: drain ends them.
func (o *forwarders) waitFor(d time.Duration) bool {
	done := make(chan struct{})
	go func() { o.wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// drain gives the forwarders d to end by themselves (a rank's last output
// on its way, or a process that inherited a rank's pipes and still holds
// them), then closes what they read and write and waits for them.
func (o *forwarders) drain(d time.Duration) {
	if !o.waitFor(d) {
		o.closeAll()
		o.wg.Wait()
	}
}

func (o *forwarders) closeAll() {
	o.mu.Lock()
	cs := o.cut
	o.cut = nil
	o.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}
