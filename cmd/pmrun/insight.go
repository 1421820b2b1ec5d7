package main

import (
	"fmt"
	"io"
	"os"

	"github.com/pmrun/pmrun/internal/insight"
	"github.com/pmrun/pmrun/node"
)

// finishInsight writes the trace file (--trace) and prints the report
// (--report) from the summaries the ranks sent. Ranks that sent none (they
// did not close their world, or the job was aborted) are left out, and
// pmrun says so; the error is the first failure to write the trace.
func (o *options) finishInsight(res node.Result, stderr io.Writer) error {
	sums, err := insight.Decode(res.Summaries)
	if err != nil {
		fmt.Fprintf(stderr, "pmrun: %v\n", err)
	}
	if o.trace != "" {
		if err := writeTrace(o.trace, sums); err != nil {
			fmt.Fprintf(stderr, "pmrun: --trace: %v\n", err)
			return err
		}
	}
	if o.report {
		insight.WriteReport(stderr, sums)
	}
	return nil
}

// writeTrace writes sums as one trace-event document to path.
func writeTrace(path string, sums []*insight.Summary) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := insight.WriteTrace(f, sums); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
