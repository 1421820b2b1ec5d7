// Package dockerx holds every Docker Engine call pmrun makes, behind the small
// Engine interface, so the rest of pmrun never imports a Docker client and a
// change in the client library stays in this package.
//
// New connects to the engine named by the environment (DOCKER_HOST,
// DOCKER_CERT_PATH, DOCKER_TLS_VERIFY, DOCKER_API_VERSION; by default the local
// socket) and negotiates the API version on the first call, so engines as old as
// API 1.40 (Docker 19.03) work; setting DOCKER_API_VERSION turns negotiation off.
// Images are built with the classic builder only: it needs no registry and never
// pulls a FROM image that exists locally.
//
// Everything pmrun creates carries a label, so that Cleanup can remove it by
// that label even after a crash:
//
//	e, err := dockerx.New()
//	if err != nil {
//		return err
//	}
//	defer e.Close()
//	defer dockerx.Cleanup(context.WithoutCancel(ctx), e, "pmrun.job", job)
//	labels := map[string]string{"pmrun.job": job}
//	netID, err := e.CreateNetwork(ctx, "pmrun-"+job, labels)
//	// ...
//	id, err := e.RunContainer(ctx, dockerx.ContainerSpec{
//		Name: "pmrun-" + job + "-0", Hostname: "node0", Image: "pmrun:latest",
//		Cmd: []string{"agent"}, Network: netID, Labels: labels, Init: true,
//	})
//	ip, err := e.ContainerIP(ctx, id, netID)
//
// Every method takes a context and blocks until the engine has answered; an
// Engine is safe for concurrent use.
package dockerx
