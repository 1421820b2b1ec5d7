// Package testwheel writes a tiny pure-Python wheel, pmruntiny 1.0 (module
// pmruntiny with VALUE = 42, or another value), for tests of offline
// --requirements installs (pip install --no-index --find-links DIR pmruntiny==1.0).
package testwheel

import (
	"strconv"

	"github.com/pmrun/pmrun/internal/wheel"
)

var spec = wheel.Spec{Name: "pmruntiny", Version: "1.0", Tag: "py3-none-any", Purelib: true}

// Name is the wheel's file name, which pip parses.
var Name = spec.FileName()

// Write writes the wheel into dir as Name.
func Write(dir string) error { return WriteValue(dir, 42) }

// WriteValue writes the wheel into dir as Name with pmruntiny.VALUE = value:
// a rebuilt wheel of the same version with other contents.
func WriteValue(dir string, value int) error {
	_, err := wheel.Write(dir, spec, []wheel.File{
		{Name: "pmruntiny/__init__.py", Data: []byte("VALUE = " + strconv.Itoa(value) + "\n")},
	})
	return err
}
