package dockerx

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// removeTimeout bounds the removal of a container that failed to start, which
// runs even when the caller's context is done.
const removeTimeout = 30 * time.Second

// mobyEngine implements Engine with the Moby Engine API client.
type mobyEngine struct {
	cli *client.Client // safe for concurrent use
}

var _ Engine = (*mobyEngine)(nil)

// New connects to the engine named by the environment (DOCKER_HOST etc., by
// default the local socket), negotiating the API version on the first call.
// It does not contact the engine; call Ping for that.
func New() (Engine, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("dockerx: %w", err)
	}
	return &mobyEngine{cli: cli}, nil
}

func (m *mobyEngine) Ping(ctx context.Context) error {
	if _, err := m.cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		return fmt.Errorf("dockerx: ping %s: %w", m.cli.DaemonHost(), err)
	}
	return nil
}

func (m *mobyEngine) ImageExists(ctx context.Context, ref string) (bool, error) {
	if _, err := m.cli.ImageInspect(ctx, ref); err != nil {
		if cerrdefs.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("dockerx: inspect image %s: %w", ref, err)
	}
	return true, nil
}

func (m *mobyEngine) ImageID(ctx context.Context, ref string) (string, error) {
	img, err := m.cli.ImageInspect(ctx, ref)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return "", nil
		}
		return "", fmt.Errorf("dockerx: inspect image %s: %w", ref, err)
	}
	return img.ID, nil
}

func (m *mobyEngine) TagImage(ctx context.Context, source, target string) error {
	if _, err := m.cli.ImageTag(ctx, client.ImageTagOptions{Source: source, Target: target}); err != nil {
		return fmt.Errorf("dockerx: tag %s as %s: %w", source, target, err)
	}
	return nil
}

func (m *mobyEngine) RemoveImage(ctx context.Context, ref string) error {
	_, err := m.cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("dockerx: remove image %s: %w", ref, err)
	}
	return nil
}

func (m *mobyEngine) CreateNetwork(ctx context.Context, name string, labels map[string]string) (string, error) {
	// Engines before API 1.44 accept a second network of the same name unless
	// asked to check, and this client no longer asks: check here.
	list, err := m.cli.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("name", name)})
	if err != nil {
		return "", fmt.Errorf("dockerx: create network %s: %w", name, err)
	}
	for _, n := range list.Items {
		if n.Name == name {
			return "", fmt.Errorf("dockerx: create network %s: a network of that name exists (%.12s)", name, n.ID)
		}
	}
	res, err := m.cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{Driver: "bridge", Labels: labels})
	if err != nil {
		return "", fmt.Errorf("dockerx: create network %s: %w", name, err)
	}
	// Such engines only warn when another network of that name was created
	// since the check above.
	for _, w := range res.Warning {
		if strings.Contains(w, "already exists") {
			if err := m.RemoveNetwork(ctx, res.ID); err != nil {
				return "", fmt.Errorf("dockerx: create network %s: %s (and removing the duplicate: %w)", name, w, err)
			}
			return "", fmt.Errorf("dockerx: create network %s: %s", name, w)
		}
	}
	return res.ID, nil
}

func (m *mobyEngine) RemoveNetwork(ctx context.Context, id string) error {
	_, err := m.cli.NetworkRemove(ctx, id, client.NetworkRemoveOptions{})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("dockerx: remove network %s: %w", id, err)
	}
	return nil
}

func (m *mobyEngine) RunContainer(ctx context.Context, spec ContainerSpec) (string, error) {
	name := spec.Name
	if name == "" {
		name = spec.Image
	}
	opts := client.ContainerCreateOptions{
		Name: spec.Name,
		Config: &container.Config{
			Hostname:   spec.Hostname,
			Image:      spec.Image,
			Cmd:        spec.Cmd,
			Entrypoint: spec.Entrypoint,
			Env:        spec.Env,
			Labels:     spec.Labels,
		},
		HostConfig: &container.HostConfig{},
	}
	if spec.Init {
		opts.HostConfig.Init = &spec.Init
	}
	opts.HostConfig.ShmSize = spec.ShmSize
	opts.HostConfig.NanoCPUs = spec.NanoCPUs
	for name, path := range spec.Volumes {
		opts.HostConfig.Mounts = append(opts.HostConfig.Mounts, mount.Mount{Type: mount.TypeVolume, Source: name, Target: path})
	}
	for port, host := range spec.Publish {
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return "", fmt.Errorf("dockerx: container %s: publishing port %d on %q: %w", name, port, host, err)
		}
		if port < 1 || port > 65535 {
			return "", fmt.Errorf("dockerx: container %s: cannot publish port %d", name, port)
		}
		p, _ := network.PortFrom(uint16(port), network.TCP)
		if opts.HostConfig.PortBindings == nil {
			opts.HostConfig.PortBindings = network.PortMap{}
			opts.Config.ExposedPorts = network.PortSet{}
		}
		opts.HostConfig.PortBindings[p] = []network.PortBinding{{HostIP: ip}}
		opts.Config.ExposedPorts[p] = struct{}{}
	}
	if spec.Network != "" {
		opts.HostConfig.NetworkMode = container.NetworkMode(spec.Network)
		ep := &network.EndpointSettings{}
		if spec.Hostname != "" {
			ep.Aliases = []string{spec.Hostname}
		}
		opts.NetworkingConfig = &network.NetworkingConfig{
			EndpointsConfig: map[string]*network.EndpointSettings{spec.Network: ep},
		}
	}
	created, err := m.cli.ContainerCreate(ctx, opts)
	if err != nil {
		return "", fmt.Errorf("dockerx: create container %s: %w", name, err)
	}
	if _, err := m.cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
		defer cancel()
		_, rerr := m.cli.ContainerRemove(rctx, created.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
		if rerr != nil && !cerrdefs.IsNotFound(rerr) {
			return "", fmt.Errorf("dockerx: start container %s: %w (and removing it: %v)", name, err, rerr)
		}
		return "", fmt.Errorf("dockerx: start container %s: %w", name, err)
	}
	return created.ID, nil
}

func (m *mobyEngine) inspect(ctx context.Context, id string) (container.InspectResponse, error) {
	res, err := m.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	return res.Container, err
}

func (m *mobyEngine) ContainerIP(ctx context.Context, id, net string) (string, error) {
	c, err := m.inspect(ctx, id)
	if err != nil {
		return "", fmt.Errorf("dockerx: address of container %s: %w", id, err)
	}
	if c.NetworkSettings != nil {
		for name, ep := range c.NetworkSettings.Networks {
			if ep == nil || (name != net && ep.NetworkID != net) {
				continue
			}
			if !ep.IPAddress.IsValid() {
				break
			}
			return ep.IPAddress.String(), nil
		}
	}
	return "", fmt.Errorf("dockerx: container %s has no address on network %s", id, net)
}

func (m *mobyEngine) PublishedPort(ctx context.Context, id string, port int) (string, error) {
	c, err := m.inspect(ctx, id)
	if err != nil {
		return "", fmt.Errorf("dockerx: published port of container %s: %w", id, err)
	}
	if p, ok := network.PortFrom(uint16(port), network.TCP); ok && c.NetworkSettings != nil {
		for _, b := range c.NetworkSettings.Ports[p] {
			if b.HostPort != "" {
				return net.JoinHostPort(b.HostIP.String(), b.HostPort), nil
			}
		}
	}
	return "", fmt.Errorf("dockerx: container %s does not publish port %d", id, port)
}

func (m *mobyEngine) ContainerRunning(ctx context.Context, id string) (bool, error) {
	c, err := m.inspect(ctx, id)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("dockerx: inspect container %s: %w", id, err)
	}
	return c.State != nil && c.State.Running, nil
}

func (m *mobyEngine) KillContainer(ctx context.Context, id string) error {
	_, err := m.cli.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "KILL"})
	if err == nil {
		return nil
	}
	// The engine refuses to kill a container that is not running (409); that
	// is the state the caller wants.
	if cerrdefs.IsConflict(err) {
		if c, ierr := m.inspect(ctx, id); ierr == nil && c.State != nil && !c.State.Running {
			return nil
		}
	}
	return fmt.Errorf("dockerx: kill container %s: %w", id, err)
}

func (m *mobyEngine) DisconnectNetwork(ctx context.Context, net, id string) error {
	if _, err := m.cli.NetworkDisconnect(ctx, net, client.NetworkDisconnectOptions{Container: id}); err != nil {
		return fmt.Errorf("dockerx: disconnect container %s from network %s: %w", id, net, err)
	}
	return nil
}

func (m *mobyEngine) RemoveContainer(ctx context.Context, id string) error {
	_, err := m.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("dockerx: remove container %s: %w", id, err)
	}
	return nil
}

func (m *mobyEngine) ContainerLogs(ctx context.Context, id string) (string, error) {
	rc, err := m.cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return "", fmt.Errorf("dockerx: logs of container %s: %w", id, err)
	}
	defer rc.Close()
	// Containers are created without a TTY, so the stream is multiplexed;
	// StdCopy writes the frames in order, both to the same buffer.
	var buf bytes.Buffer
	if _, err := stdcopy.StdCopy(&buf, &buf, rc); err != nil {
		return buf.String(), fmt.Errorf("dockerx: logs of container %s: %w", id, err)
	}
	return buf.String(), nil
}

func (m *mobyEngine) Labeled(ctx context.Context, key, value string) (containers, networks []string, err error) {
	f := make(client.Filters).Add("label", key+"="+value)
	cl, err := m.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, nil, fmt.Errorf("dockerx: list containers %s=%s: %w", key, value, err)
	}
	nl, err := m.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return nil, nil, fmt.Errorf("dockerx: list networks %s=%s: %w", key, value, err)
	}
	for _, c := range cl.Items {
		containers = append(containers, c.ID)
	}
	for _, n := range nl.Items {
		networks = append(networks, n.ID)
	}
	return containers, networks, nil
}

func (m *mobyEngine) WithLabel(ctx context.Context, key string) ([]Object, error) {
	f := make(client.Filters).Add("label", key)
	cl, err := m.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("dockerx: list containers labelled %s: %w", key, err)
	}
	nl, err := m.cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return nil, fmt.Errorf("dockerx: list networks labelled %s: %w", key, err)
	}
	var objs []Object
	for _, c := range cl.Items {
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		objs = append(objs, Object{ID: c.ID, Name: name, Labels: c.Labels})
	}
	for _, n := range nl.Items {
		objs = append(objs, Object{ID: n.ID, Name: n.Name, Network: true, Labels: n.Labels})
	}
	return objs, nil
}

func (m *mobyEngine) Info(ctx context.Context) (HostInfo, error) {
	res, err := m.cli.Info(ctx, client.InfoOptions{})
	if err != nil {
		return HostInfo{}, fmt.Errorf("dockerx: engine info: %w", err)
	}
	return HostInfo{NCPU: res.Info.NCPU, MemTotal: res.Info.MemTotal}, nil
}

func (m *mobyEngine) Close() error {
	return m.cli.Close()
}
