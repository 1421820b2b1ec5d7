package dockerx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
)

// outputTail is how many lines of a failing step's output a BuildError keeps.
const outputTail = 20

func (m *mobyEngine) BuildImage(ctx context.Context, buildContext io.Reader, dockerfile, tag string, buildArgs, labels map[string]string, log io.Writer) error {
	args := make(map[string]*string, len(buildArgs))
	for k, v := range buildArgs {
		args[k] = &v
	}
	res, err := m.cli.ImageBuild(ctx, buildContext, client.ImageBuildOptions{
		Tags:        []string{tag},
		Dockerfile:  dockerfile,
		BuildArgs:   args,
		Labels:      labels,
		Remove:      true,
		ForceRemove: true,            // also remove intermediate containers of a failed build
		Version:     build.BuilderV1, // the classic builder; PullParent stays false
	})
	if err != nil {
		return fmt.Errorf("dockerx: build %s: %w", tag, err)
	}
	defer res.Body.Close()
	return readBuildOutput(res.Body, tag, log)
}

// buildMessage is one message of the builder's JSON stream. Engines send an
// error both in errorDetail and, older ones only, in error.
type buildMessage struct {
	jsonstream.Message
	ErrorMessage string `json:"error,omitempty"`
}

// readBuildOutput follows the builder's JSON stream r to its end, copying the
// output to log (if not nil), and returns a *BuildError for a reported failure.
func readBuildOutput(r io.Reader, tag string, log io.Writer) error {
	var (
		dec     = json.NewDecoder(r)
		step    string   // the last "Step n/m : ..." line
		lines   []string // the last outputTail lines printed since step
		partial string   // text after the last newline
		built   bool     // the builder reported the image
	)
	for {
		var msg buildMessage
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("dockerx: build %s: reading the builder's output: %w", tag, err)
		}
		if msg.Error != nil || msg.ErrorMessage != "" {
			be := &BuildError{Tag: tag, Step: step, Message: msg.ErrorMessage}
			if msg.Error != nil && msg.Error.Message != "" {
				be.Message = msg.Error.Message
			}
			be.Message = strings.TrimSpace(be.Message)
			if log == nil {
				if partial != "" {
					lines = append(lines, partial)
				}
				be.Output = strings.Join(lines[max(0, len(lines)-outputTail):], "\n")
			}
			return be
		}
		if msg.Aux != nil {
			var aux struct{ ID string }
			if json.Unmarshal(*msg.Aux, &aux) == nil && aux.ID != "" {
				built = true
			}
			continue
		}
		text := msg.Stream
		if text == "" && msg.Status != "" {
			if msg.Progress != nil && (msg.Progress.Current > 0 || msg.Progress.Total > 0) {
				continue // a progress bar update
			}
			if msg.ID != "" {
				text = msg.ID + ": "
			}
			text += msg.Status + "\n"
		}
		if text == "" {
			continue
		}
		if log != nil {
			if _, err := io.WriteString(log, text); err != nil {
				return fmt.Errorf("dockerx: build %s: writing the log: %w", tag, err)
			}
		}
		text = partial + text
		for {
			line, rest, ok := strings.Cut(text, "\n")
			if !ok {
				partial = text
				break
			}
			text = rest
			switch {
			case strings.HasPrefix(line, "Step "):
				step, lines = line, lines[:0]
			case strings.HasPrefix(line, "Successfully built "):
				built = true
			default:
				if len(lines) == 2*outputTail {
					lines = append(lines[:0], lines[outputTail:]...)
				}
				lines = append(lines, line)
			}
		}
	}
	if !built {
		return fmt.Errorf("dockerx: build %s: the builder ended without reporting an image", tag)
	}
	return nil
}
