package dockerx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// Engine is the subset of the Docker Engine API pmrun uses. IDs returned by
// one method are accepted by the others; wherever an ID is taken, a name works
// too. Implementations are safe for concurrent use.
type Engine interface {
	// Ping checks that the engine answers, and negotiates the API version.
	Ping(ctx context.Context) error

	// ImageExists reports whether ref (a name[:tag] or an ID) is present locally.
	ImageExists(ctx context.Context, ref string) (bool, error)

	// ImageID returns the ID of the local image ref (a name[:tag] or an ID),
	// or "" when there is none.
	ImageID(ctx context.Context, ref string) (string, error)

	// BuildImage builds tag with the classic builder (no BuildKit, never pulls
	// a base that exists locally) from buildContext, a tar stream holding
	// dockerfile ("" means "Dockerfile"). The builder's output lines go to log,
	// which may be nil. A failed step returns a *BuildError holding the
	// builder's message.
	BuildImage(ctx context.Context, buildContext io.Reader, dockerfile, tag string, buildArgs, labels map[string]string, log io.Writer) error

	// TagImage gives the local image source the further name target
	// (repository[:tag], tag "latest" when omitted), moving target off any
	// image that had it.
	TagImage(ctx context.Context, source, target string) error

	// RemoveImage removes the image ref and its untagged parents. An image
	// that does not exist is not an error.
	RemoveImage(ctx context.Context, ref string) error

	// CreateNetwork creates a bridge network named name and returns its ID.
	// A network of that name must not exist already.
	CreateNetwork(ctx context.Context, name string, labels map[string]string) (id string, err error)

	// RemoveNetwork removes a network that has no containers attached. A
	// network that does not exist is not an error.
	RemoveNetwork(ctx context.Context, id string) error

	// RunContainer creates and starts a container. If it cannot be started,
	// it is removed again.
	RunContainer(ctx context.Context, spec ContainerSpec) (id string, err error)

	// ContainerIP returns the IP address of container id on network (a name
	// or an ID).
	ContainerIP(ctx context.Context, id, network string) (string, error)

	// PublishedPort returns the host address (host:port) at which the TCP
	// port of container id is published (ContainerSpec.Publish).
	PublishedPort(ctx context.Context, id string, port int) (string, error)

	// ContainerRunning reports whether container id is running. A container
	// that does not exist is not running.
	ContainerRunning(ctx context.Context, id string) (bool, error)

	// KillContainer sends SIGKILL to the container's main process. A
	// container that is not running is not an error.
	KillContainer(ctx context.Context, id string) error

	// DisconnectNetwork detaches container id from network (a name or an ID).
	DisconnectNetwork(ctx context.Context, network, id string) error

	// RemoveContainer removes container id, killing it if it runs, with its
	// anonymous volumes. A container that does not exist is not an error.
	RemoveContainer(ctx context.Context, id string) error

	// ContainerLogs returns everything the container wrote so far, stdout and
	// stderr demultiplexed into one text in the order written, for diagnostics.
	ContainerLogs(ctx context.Context, id string) (string, error)

	// Labeled lists the IDs of the containers (in any state) and of the
	// networks that carry the label key=value.
	Labeled(ctx context.Context, key, value string) (containers, networks []string, err error)

	// WithLabel lists the containers (in any state) and the networks that
	// carry the label key, whatever its value, with all their labels.
	WithLabel(ctx context.Context, key string) ([]Object, error)

	// Info returns what the engine's host offers to containers.
	Info(ctx context.Context) (HostInfo, error)

	// Close releases the engine's idle connections. It is idempotent.
	Close() error
}

// ContainerSpec describes a container for Engine.RunContainer.
type ContainerSpec struct {
	// Name is the container's name; "" lets the engine choose one.
	Name string
	// Hostname is the container's host name; on Network it is also a DNS
	// alias, so other containers there can reach it by that name.
	Hostname string
	// Image is the image to run; it must exist locally (nothing is pulled).
	Image string
	// Cmd holds the arguments after the image's entrypoint; nil means the
	// image's CMD.
	Cmd []string
	// Entrypoint replaces the image's entrypoint; nil means the image's.
	Entrypoint []string
	// Env holds KEY=value entries added to the image's environment.
	Env []string
	// Network is the name or ID of the network to attach to; "" means the
	// engine's default bridge, where Hostname is not a DNS alias.
	Network string
	// Labels are set on the container; Engine.Labeled and Cleanup find it
	// by them.
	Labels map[string]string
	// Init runs an init process as PID 1 that reaps zombies and forwards
	// signals (docker run --init).
	Init bool
	// ShmSize is the size of the container's /dev/shm in bytes; 0 means the
	// engine's default (64 MiB).
	ShmSize int64
	// NanoCPUs limits the container to this many CPUs, in 10⁻⁹ CPUs
	// (docker run --cpus); 0 means no limit.
	NanoCPUs int64
	// Volumes maps named volumes to the paths where they are mounted
	// (docker run -v NAME:PATH); the engine creates a volume on first use.
	Volumes map[string]string
	// Publish maps TCP ports of the container to the host addresses they are
	// published on (docker run -p HOSTIP::PORT), such as "127.0.0.1" for
	// this host only; the engine chooses the host ports (see
	// Engine.PublishedPort).
	Publish map[int]string
}

// Object is a container or a network that Engine.WithLabel found.
type Object struct {
	ID      string
	Name    string // without a leading "/"
	Network bool   // a network, else a container
	Labels  map[string]string
}

// HostInfo is what Engine.Info reports of the engine's host.
type HostInfo struct {
	NCPU     int   // CPUs
	MemTotal int64 // memory in bytes
}

// BuildError is returned by Engine.BuildImage when the builder reports a
// failure, usually a step that failed.
type BuildError struct {
	Tag     string // the tag being built
	Step    string // the failing step as the builder announced it ("Step 2/4 : RUN make"), if known
	Message string // the builder's error message
	Output  string // the last lines the failing step printed (only when BuildImage had no log)
}

func (e *BuildError) Error() string {
	s := "dockerx: build " + e.Tag + ": "
	if e.Step != "" {
		s += e.Step + ": "
	}
	s += e.Message
	if e.Output != "" {
		s += "\n" + e.Output
	}
	return s
}

// availableTimeout bounds how long Available waits for the engine.
const availableTimeout = 5 * time.Second

// Available reports whether an engine answers within a few seconds and, when
// not, why (for tests to skip with a message).
func Available() (bool, string) {
	e, err := New()
	if err != nil {
		return false, err.Error()
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), availableTimeout)
	defer cancel()
	if err := e.Ping(ctx); err != nil {
		return false, err.Error()
	}
	return true, ""
}

// CleanupLimit bounds how many containers Cleanup removes at a time.
const CleanupLimit = 8

// Cleanup removes every container and then every network labelled key=value,
// CleanupLimit containers at a time. It keeps going past errors and returns
// them joined; it returns nil when nothing carries the label.
func Cleanup(ctx context.Context, e Engine, key, value string) error {
	containers, networks, err := e.Labeled(ctx, key, value)
	if err != nil {
		return fmt.Errorf("dockerx: cleanup %s=%s: %w", key, value, err)
	}
	errs := make([]error, len(containers))
	ForEach(ctx, len(containers), CleanupLimit, func(ctx context.Context, i int) error {
		errs[i] = e.RemoveContainer(ctx, containers[i])
		return nil
	})
	for _, id := range networks {
		if err := e.RemoveNetwork(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ForEach calls fn(ctx, i) for i in [0, n), at most limit calls at a time,
// and returns the first error. After an error, or when ctx is done, it
// starts no further calls (ctx's error is then returned) and cancels the
// context of those running; it returns when all calls have returned.
func ForEach(ctx context.Context, n, limit int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}
