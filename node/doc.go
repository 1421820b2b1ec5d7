// Package node runs a job's ranks on a node: it starts the rank processes with the
// launcher-rank environment (internal/rankenv, which package comm reads), serves
// the rendezvous through which they find each other, forwards their output line
// by line, and ends the job as soon as any rank fails (like MPI_ERRORS_ARE_FATAL),
// naming the rank and why.
//
// The pmrun launcher runs local jobs with RunLocal:
//
//	res, err := node.RunLocal(ctx, node.JobSpec{Program: "./prog", NP: 4}, os.Stdout, os.Stderr)
//	if err != nil {
//		log.Fatal(err)
//	}
//	os.Exit(res.ExitCode)
//
// Agents (StartAgent) form a cluster by gossip and run the ranks of cluster
// jobs (RunCluster). For task mode, RunHub serves warm Python task workers
// to a client, on this machine or on the agents of a cluster, until ctx ends:
//
//	err := node.RunHub(ctx, node.HubConfig{Cluster: []string{"node1"}, Socket: "/tmp/hub.sock",
//		Events: os.Stdout, Stderr: os.Stderr})
package node
