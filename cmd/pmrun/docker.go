package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pmrun/pmrun/docker"
	"github.com/pmrun/pmrun/internal/dockerx"
	"github.com/pmrun/pmrun/node"
)

// defaultImage names the agents' image for --docker after the contents of
// this launcher and its Python package, so that a rebuilt pmrun gets a fresh
// image instead of running an old one: pmrun:agent-<hash>.
func defaultImage() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range []string{exe, filepath.Join(node.PythonDir(), "pmrun", "libpmrun.so")} {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("--docker: %w (run make build)", err)
		}
		h.Write(b)
	}
	err = filepath.WalkDir(node.PythonDir(), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".py") {
			return err
		}
		b, err := os.ReadFile(p)
		h.Write([]byte(p))
		h.Write(b)
		return err
	})
	if err != nil {
		return "", err
	}
	return "pmrun:agent-" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// Labels on everything a --docker job creates: the job's id, and the
// launcher (host:pid) that owns it, to find what a killed launcher left.
const (
	dockerLabel   = "pmrun.job"
	launcherLabel = "pmrun.launcher"
)

// runDocker starts --nodes agent containers on a private network, runs the
// job on them and removes the containers and the network, also when the job
// fails or is interrupted.
func runDocker(o *options, spec node.ClusterSpec, stdout, stderr io.Writer) (res node.Result, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	e, err := connect(ctx)
	if err != nil {
		return res, fmt.Errorf("--docker: %w", err)
	}
	defer e.Close()
	image := o.image
	if image == "" {
		if image, err = agentImage(ctx, e, stderr); err != nil {
			return res, fmt.Errorf("--docker: %w", err)
		}
	} else if ok, err := e.ImageExists(ctx, image); err != nil || !ok {
		return res, fmt.Errorf("--docker: image %s not found (%v)", image, err)
	}

	id := make([]byte, 6)
	rand.Read(id)
	job := hex.EncodeToString(id)
	key := make([]byte, 16)
	rand.Read(key)
	spec.Key = hex.EncodeToString(key)
	host, _ := os.Hostname()
	labels := map[string]string{dockerLabel: job, launcherLabel: host + ":" + strconv.Itoa(os.Getpid())}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		if cerr := dockerx.Cleanup(cctx, e, dockerLabel, job); cerr != nil {
			fmt.Fprintf(stderr, "pmrun: removing the job's containers: %v\n", cerr)
		}
	}()
	network := "pmrun-" + job
	if _, err := e.CreateNetwork(ctx, network, labels); err != nil {
		return res, fmt.Errorf("--docker: %w", err)
	}
	var first string
	for i := range o.nodes {
		name := "node" + strconv.Itoa(i)
		args := []string{"--bind", "0.0.0.0:7946", "--name", name}
		if i > 0 {
			args = append(args, "--join", "node0")
		}
		cid, err := e.RunContainer(ctx, dockerx.ContainerSpec{
			Name: "pmrun-" + job + "-" + name, Hostname: name, Image: image, Cmd: args,
			Env: []string{node.EnvClusterKey + "=" + spec.Key}, Network: network, Labels: labels, Init: true,
		})
		if err != nil {
			return res, fmt.Errorf("--docker: starting %s: %w", name, err)
		}
		if i == 0 {
			ip, err := e.ContainerIP(ctx, cid, network)
			if err != nil {
				return res, fmt.Errorf("--docker: %w", err)
			}
			first = net.JoinHostPort(ip, strconv.Itoa(node.DefaultControlPort))
		}
	}
	if err := waitMembers(ctx, first, spec.Key, o.nodes); err != nil {
		return res, fmt.Errorf("--docker: the agents did not form a cluster: %w", err)
	}
	spec.Cluster = []string{first}
	return node.RunCluster(context.Background(), spec, stdout, stderr)
}

// connect returns a client of the local Docker engine, which answered.
func connect(ctx context.Context) (dockerx.Engine, error) {
	e, err := dockerx.New()
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.Ping(pctx); err != nil {
		e.Close()
		return nil, fmt.Errorf("no Docker engine answers: %w", err)
	}
	return e, nil
}

// agentImage returns the name of the agents' image for this launcher and its
// Python package, building it from the embedded Dockerfile on the offline
// base when the engine does not have it.
func agentImage(ctx context.Context, e dockerx.Engine, log io.Writer) (string, error) {
	image, err := defaultImage()
	if err != nil {
		return "", err
	}
	if ok, err := e.ImageExists(ctx, image); err != nil {
		return "", err
	} else if ok {
		return image, nil
	}
	base := docker.BaseImage
	if ok, _ := e.ImageExists(ctx, base); !ok {
		return "", fmt.Errorf("image %s is missing and so is its base %s: run docker/make-base.sh once (it builds the base from Debian packages, no registry needed), or give --image", image, base)
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	py := node.PythonDir()
	if py == "" {
		return "", errors.New("pmrun's Python package is not next to the launcher (run make build)")
	}
	bctx, err := dockerx.BuildContext(map[string]string{"bin/pmrun": exe, "bin/python": py},
		map[string][]byte{"Dockerfile": docker.Dockerfile})
	if err != nil {
		return "", err
	}
	fmt.Fprintf(log, "pmrun: building image %s on %s\n", image, base)
	err = e.BuildImage(ctx, bctx, "Dockerfile", image, map[string]string{"BASE": base}, map[string]string{"pmrun.image": "agent"}, nil)
	return image, err
}

const imageUsage = `usage: pmrun image [--tag NAME[:TAG]]

Builds the node agents' image from this pmrun and its Python package (on the
offline base ` + docker.BaseImage + `, see docker/make-base.sh) unless the engine
has it already, and names it NAME (default pmrun:latest), the image
docker/compose.yml and docker/stack.yml run. Prints the image's names.
`

// runImage is "pmrun image": build and tag the agents' image for compose
// files, Swarm stacks and other engines (docker save | docker load).
func runImage(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pmrun image", flag.ContinueOnError)
	tag := fs.String("tag", "pmrun:latest", "")
	if code := parseSub(fs, args, imageUsage, nil, stdout, stderr); code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e, err := connect(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "pmrun image: %v\n", err)
		return 1
	}
	defer e.Close()
	image, err := agentImage(ctx, e, stderr)
	if err == nil && *tag != "" {
		err = e.TagImage(ctx, image, *tag)
	}
	if err != nil {
		fmt.Fprintf(stderr, "pmrun image: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, image)
	if *tag != "" {
		fmt.Fprintln(stdout, *tag)
	}
	return 0
}

// waitMembers waits until the agent at addr answers and sees n live nodes.
func waitMembers(ctx context.Context, addr, key string, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ms, err := node.QueryMembers(qctx, addr, key)
		cancel()
		if err == nil {
			alive := 0
			for _, m := range ms {
				if m.State == "alive" {
					alive++
				}
			}
			if alive == n {
				return nil
			}
			err = fmt.Errorf("%d of %d nodes joined", alive, n)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return last
}
