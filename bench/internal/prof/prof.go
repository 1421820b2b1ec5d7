// Package prof starts the pprof profiles the benchmark programs offer
// (-cpuprofile, -blockprofile), one file per rank.
package prof

import (
	"fmt"
	"log"
	"os"
	"runtime"
	"runtime/pprof"
)

// Start starts the profiles asked for (an empty prefix asks for none), in
// files named prefix.<rank>, and returns what writes and closes them.
func Start(cpu, block string, rank int) (func(), error) {
	var cf *os.File
	if cpu != "" {
		f, err := os.Create(fmt.Sprintf("%s.%d", cpu, rank))
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		cf = f
	}
	if block != "" {
		runtime.SetBlockProfileRate(1)
	}
	return func() {
		if cf != nil {
			pprof.StopCPUProfile()
			cf.Close()
		}
		if block != "" {
			f, err := os.Create(fmt.Sprintf("%s.%d", block, rank))
			if err != nil {
				log.Print(err)
				return
			}
			defer f.Close()
			if err := pprof.Lookup("block").WriteTo(f, 0); err != nil {
				log.Print(err)
			}
		}
	}, nil
}
