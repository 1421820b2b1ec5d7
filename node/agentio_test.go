package node

import (
	"io"
	"os"
	"testing"
)

// TestClusterPromptAndInput: on a cluster, as locally, rank 0's prompt
// reaches the output before its line ends, what is typed reaches rank 0, the
// rank ends once it has read what it wanted (while the launcher's input stays
// open), and its output ends without a newline added.
func TestClusterPromptAndInput(t *testing.T) {
	as := startAgents(t, 1, "k")
	res, out := answerPrompt(t, "prompt> ", "yes\n", func(stdin io.Reader, out io.Writer) (Result, error) {
		spec := ClusterSpec{JobSpec: JobSpec{Program: "/bin/sh", NP: 2, Stdin: stdin,
			Args: []string{"-c", `[ "$PMRUN_RANK" = 0 ] || exit 0; printf 'prompt> '; read answer; printf "got $answer"`}},
			Hosts: []Host{{Addr: as[0].ControlAddr()}}, Key: "k"}
		return RunCluster(t.Context(), spec, out, os.Stderr)
	})
	if res.ExitCode != 0 || out != "prompt> got yes" {
		t.Errorf("status %d, output %q", res.ExitCode, out)
	}
}
