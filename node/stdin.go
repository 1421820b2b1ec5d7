package node

import (
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Standard input: ranks never read the launcher's terminal (or whatever its
// stdin is) themselves. A rank is not in the terminal's foreground process
// group, so reading it would stop the rank (SIGTTIN). The launcher reads its
// stdin and forwards it to rank 0 through a pipe, and closes the pipe when its
// stdin ends; the other ranks read /dev/null, as with mpirun.

// backgroundPoll is how often a launcher in the background checks whether it
// may read its terminal again.
const backgroundPoll = 200 * time.Millisecond

// copyStdin copies src to dst until src ends, dst fails or quit is closed.
// When src is a terminal, it reads only while this process is in the
// terminal's foreground, so that a job started in the background (pmrun &)
// runs on instead of being stopped for reading the terminal. A read in
// progress when quit closes ends only if src has read deadlines; otherwise
// copyStdin returns when that read does.
func copyStdin(dst io.Writer, src io.Reader, quit <-chan struct{}) {
	fd := -1 // src's descriptor if it is a terminal
	if f, ok := src.(*os.File); ok {
		// Not f.Fd(), which would make a pipe's reads blocking, and so
		// impossible to interrupt with a deadline.
		if rc, err := f.SyscallConn(); err == nil {
			rc.Control(func(d uintptr) {
				if isTerminal(d) {
					fd = int(d)
				}
			})
		}
	}
	buf := make([]byte, 32<<10)
	for {
		for fd >= 0 && !inForeground(uintptr(fd)) {
			select {
			case <-quit:
				return
			case <-time.After(backgroundPoll):
			}
		}
		select {
		case <-quit:
			return
		default:
		}
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return // the rank closed its stdin or exited
			}
		}
		if err != nil {
			return
		}
	}
}

// pipeStdin gives cmd a pipe as its stdin, fed from src (see forwardStdin)
// until src ends (then the rank reads EOF) or stop is called. The caller
// closes rd once cmd has started (or failed to), and calls stop once the
// rank has exited.
func pipeStdin(cmd *exec.Cmd, src io.Reader) (rd *os.File, stop func(), err error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	cmd.Stdin = pr
	return pr, forwardStdin(pw, src), nil
}

// forwardStdin copies src to dst in a goroutine of its own, until src ends,
// dst fails or stop is called, and then closes dst. stop interrupts a read
// of src and waits for the goroutine when src has read deadlines (a pipe, a
// stream); a blocking read (a terminal) cannot be interrupted, and that
// goroutine ends with the read, or with the process.
func forwardStdin(dst io.WriteCloser, src io.Reader) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		defer dst.Close()
		copyStdin(dst, src, quit)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			if d, ok := src.(deadliner); ok && d.SetReadDeadline(time.Now()) == nil {
				<-done
				d.SetReadDeadline(time.Time{})
			}
		})
	}
}

// isTerminal reports whether fd is a terminal.
func isTerminal(fd uintptr) bool {
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}

// inForeground reports whether this process is in the foreground process
// group of terminal fd (or the terminal cannot say).
func inForeground(fd uintptr) bool {
	var pgrp int32
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCGPGRP, uintptr(unsafe.Pointer(&pgrp)))
	return errno != 0 || int(pgrp) == syscall.Getpgrp()
}
