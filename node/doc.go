// Package node runs a job's ranks on a node: it starts the rank processes with the
// environment package comm reads, serves the rendezvous through which they find
// each other, forwards their output line by line, and ends the job as soon as any
// rank fails (like MPI_ERRORS_ARE_FATAL), naming the rank and why.
//
// The pmrun launcher runs local jobs with RunLocal:
//
//	res, err := node.RunLocal(ctx, node.JobSpec{Program: "./prog", NP: 4}, os.Stdout, os.Stderr)
//	if err != nil {
//		log.Fatal(err)
//	}
//	os.Exit(res.ExitCode)
package node
