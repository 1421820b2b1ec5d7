// Package testwheel writes a tiny pure-Python wheel, pmruntiny 1.0 (module
// pmruntiny with VALUE = 42, or another value), for tests of offline
// --requirements installs (pip install --no-index --find-links DIR pmruntiny==1.0).
package testwheel

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
)

// Name is the wheel's file name, which pip parses.
const Name = "pmruntiny-1.0-py3-none-any.whl"

// Write writes the wheel into dir as Name.
func Write(dir string) error { return WriteValue(dir, 42) }

// WriteValue writes the wheel into dir as Name with pmruntiny.VALUE = value:
// a rebuilt wheel of the same version with other contents.
func WriteValue(dir string, value int) error {
	var b bytes.Buffer
	z := zip.NewWriter(&b)
	files := []struct{ name, body string }{
		{"pmruntiny/__init__.py", "VALUE = " + strconv.Itoa(value) + "\n"},
		{"pmruntiny-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: pmruntiny\nVersion: 1.0\n"},
		{"pmruntiny-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: pmrun-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
		{"pmruntiny-1.0.dist-info/RECORD", "pmruntiny/__init__.py,,\npmruntiny-1.0.dist-info/METADATA,,\npmruntiny-1.0.dist-info/WHEEL,,\npmruntiny-1.0.dist-info/RECORD,,\n"},
	}
	for _, f := range files {
		w, err := z.Create(f.name)
		if err != nil {
			return err
		}
		if _, err := w.Write([]byte(f.body)); err != nil {
			return err
		}
	}
	if err := z.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, Name), b.Bytes(), 0o644)
}
