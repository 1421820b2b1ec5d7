package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pmrun/pmrun/internal/dockerx"
)

// launcherLabels returns the labels that identify this launcher on the
// containers and networks of its --docker jobs.
func launcherLabels() map[string]string {
	host, _ := os.Hostname()
	pid := os.Getpid()
	return map[string]string{
		launcherLabel: host + ":" + strconv.Itoa(pid),
		bootLabel:     bootID(),
		startLabel:    processStart(pid),
	}
}

// bootID is the kernel's id of this boot of the host, "" where unknown.
func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

// processStart is when process pid started, in clock ticks since boot (field
// 22 of /proc/PID/stat), or "" if there is no such process.
func processStart(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// The command name (field 2) is in parentheses and may hold anything.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}

// launcherDead reports whether the launcher that labelled an object with
// labels has certainly ended: it ran on this host, in this boot or an
// earlier one, and its process is gone or is another one now.
func launcherDead(labels map[string]string) bool {
	host, pidText, ok := strings.Cut(labels[launcherLabel], ":")
	self, _ := os.Hostname()
	pid, err := strconv.Atoi(pidText)
	if !ok || err != nil || host != self {
		return false
	}
	if boot := labels[bootLabel]; boot != "" && boot != bootID() {
		return true
	}
	start := processStart(pid)
	return start == "" || (labels[startLabel] != "" && start != labels[startLabel])
}

// deadJobs returns the jobs of the objects labelled by pmrun whose launcher
// has ended (all of them with all), and their launchers.
func deadJobs(ctx context.Context, e dockerx.Engine, all bool) (map[string]string, error) {
	objs, err := e.WithLabel(ctx, dockerLabel)
	if err != nil {
		return nil, err
	}
	jobs := make(map[string]string)
	for _, o := range objs {
		if all || launcherDead(o.Labels) {
			jobs[o.Labels[dockerLabel]] = o.Labels[launcherLabel]
		}
	}
	return jobs, nil
}

// removeJobs removes the containers and networks of jobs, saying which.
func removeJobs(ctx context.Context, e dockerx.Engine, jobs map[string]string, log io.Writer) error {
	names := make([]string, 0, len(jobs))
	for j := range jobs {
		names = append(names, j)
	}
	sort.Strings(names)
	var errs []error
	for _, j := range names {
		err := dockerx.Cleanup(ctx, e, dockerLabel, j)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(log, "pmrun: removed the containers and network of job %s (launcher %s)\n", j, jobs[j])
	}
	if len(errs) > 0 {
		return fmt.Errorf("%v (and %d more)", errs[0], len(errs)-1)
	}
	return nil
}

// reapDead removes what killed launchers of this host left, before a
// --docker job starts; a failure is only reported.
func reapDead(ctx context.Context, e dockerx.Engine, log io.Writer) {
	jobs, err := deadJobs(ctx, e, false)
	if err == nil {
		err = removeJobs(ctx, e, jobs, log)
	}
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(log, "pmrun: removing what ended launchers left: %v\n", err)
	}
}

const cleanupUsage = `usage: pmrun cleanup [--all]

Removes the containers and networks of --docker jobs whose launcher has ended
on this host without removing them (killed, or the host rebooted). A --docker
job does this too before it starts.

  --all   remove every pmrun job's containers and networks, also those of
          running launchers and of other hosts
`

// runCleanup is "pmrun cleanup".
func runCleanup(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pmrun cleanup", flag.ContinueOnError)
	all := fs.Bool("all", false, "")
	if code := parseSub(fs, args, cleanupUsage, nil, stdout, stderr); code >= 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	e, err := connect(ctx)
	if err == nil {
		defer e.Close()
		var jobs map[string]string
		if jobs, err = deadJobs(ctx, e, *all); err == nil {
			err = removeJobs(ctx, e, jobs, stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "pmrun cleanup: %v\n", err)
		return 1
	}
	return 0
}
