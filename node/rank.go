package node

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"

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
	// abandon, if set, releases what output holds when the rank's pipes
	// could not be made (output then runs for none or only one of them).
	abandon func()
}

// startRank starts p with sp, which reports its exit on exits; the
// forwarders of its output are counted in outputs. A rank given stdin reads
// it through a pipe: stopStdin (nil for the others) ends that forwarding and
// waits for it where stdin can be interrupted (see pipeStdin).
func startRank(sp *spawner, p rankProc, outputs *sync.WaitGroup, exits chan<- exitEvent) (stopStdin func(), err error) {
	closeAfterStart, err := pipeOutput(p.cmd, outputs, p.output)
	if err != nil {
		if p.abandon != nil {
			p.abandon()
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
// (fd 2) and runs consume on each read end, counted in outputs. It returns the
// write ends, which the caller closes once cmd has started (or failed to).
func pipeOutput(cmd *exec.Cmd, outputs *sync.WaitGroup, consume func(fd int, r io.Reader)) ([]*os.File, error) {
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
		outputs.Add(1)
		go func() {
			defer outputs.Done()
			defer pr.Close()
			consume(fd, pr)
		}()
	}
	return ws, nil
}
