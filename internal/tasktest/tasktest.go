// Package tasktest is a stand-in for pmrun's Python task worker (python -m
// pmrun._worker), for tests of the hub and the agents that relay its stream.
// It speaks the frame envelope of the worker stream on file descriptor 3:
//
//	u8 kind, u8[3] zero, u32 nparts (LE), u64 len[nparts] (LE), parts...
//
// It says hello ('H', one part: "node/worker" from PMRUN_NODE and
// PMRUN_WORKER), then answers each call frame ('C') with a reply frame ('R')
// of the same parts, unless part 0 is an order:
//
//	"exit N"    exit with status N without replying
//	"kill"      kill itself with SIGKILL
//	"sleep MS"  sleep MS milliseconds, then reply
//	"env NAME"  reply with the value of the environment variable NAME
//	"cwd"       reply with the working directory
//
// It exits with status 0 when the stream ends, as the real worker does.
package tasktest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// EnvStandIn, set to 1, makes a test binary that calls MaybeServe serve as
// the stand-in worker instead of running its tests.
const EnvStandIn = "PMRUN_TEST_STANDIN"

// MaybeServe serves as the stand-in worker and exits when EnvStandIn is 1;
// otherwise it returns. Test binaries call it first in TestMain, so that the
// binary itself can be given as the worker command.
func MaybeServe() {
	if os.Getenv(EnvStandIn) != "1" {
		return
	}
	if err := Serve(os.NewFile(3, "worker-stream")); err != nil {
		fmt.Fprintf(os.Stderr, "stand-in worker: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Serve runs the stand-in on rw until it ends.
func Serve(rw io.ReadWriter) error {
	id := os.Getenv("PMRUN_NODE") + "/" + os.Getenv("PMRUN_WORKER")
	if err := WriteFrame(rw, 'H', []byte(id)); err != nil {
		return err
	}
	for {
		kind, parts, err := ReadFrame(rw)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if kind != 'C' {
			continue
		}
		order := string(parts[0])
		switch {
		case strings.HasPrefix(order, "exit "):
			code, _ := strconv.Atoi(order[5:])
			os.Exit(code)
		case order == "kill":
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Minute)
		case strings.HasPrefix(order, "sleep "):
			ms, _ := strconv.Atoi(order[6:])
			time.Sleep(time.Duration(ms) * time.Millisecond)
		case strings.HasPrefix(order, "env "):
			parts = [][]byte{[]byte(os.Getenv(order[4:]))}
		case order == "cwd":
			wd, _ := os.Getwd()
			parts = [][]byte{[]byte(wd)}
		}
		if err := WriteFrame(rw, 'R', parts...); err != nil {
			return err
		}
	}
}

// Frame appends the envelope and parts of one frame to b.
func Frame(b []byte, kind byte, parts ...[]byte) []byte {
	b = append(b, kind, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(parts)))
	for _, p := range parts {
		b = binary.LittleEndian.AppendUint64(b, uint64(len(p)))
	}
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// WriteFrame writes one frame in a single write.
func WriteFrame(w io.Writer, kind byte, parts ...[]byte) error {
	_, err := w.Write(Frame(nil, kind, parts...))
	return err
}

// ReadFrame reads one frame; io.EOF at a frame boundary, io.ErrUnexpectedEOF
// within one. Part lengths are trusted up to 1 GiB (it serves tests).
func ReadFrame(r io.Reader) (kind byte, parts [][]byte, err error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.LittleEndian.Uint32(hdr[4:])
	if n == 0 || n > 65536 {
		return 0, nil, fmt.Errorf("bad part count %d", n)
	}
	lens := make([]byte, 8*n)
	if _, err := io.ReadFull(r, lens); err != nil {
		return 0, nil, noEOF(err)
	}
	for i := range n {
		l := binary.LittleEndian.Uint64(lens[8*i:])
		if l > 1<<30 {
			return 0, nil, fmt.Errorf("part of %d bytes", l)
		}
		p := make([]byte, l)
		if _, err := io.ReadFull(r, p); err != nil {
			return 0, nil, noEOF(err)
		}
		parts = append(parts, p)
	}
	return hdr[0], parts, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
