package node

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPythonNextTo: the package is found next to a built launcher and around
// a launcher installed from the wheel.
func TestPythonNextTo(t *testing.T) {
	touch := func(p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	built := t.TempDir()
	touch(filepath.Join(built, "bin", "python", "pmrun", "libpmrun.so"))
	site := t.TempDir()
	touch(filepath.Join(site, "pmrun", "libpmrun.so"))
	for _, tc := range []struct {
		exe  string
		want PythonLayout
	}{
		{filepath.Join(built, "bin", "pmrun"), PythonLayout{
			Root:    filepath.Join(built, "bin", "python"),
			Package: filepath.Join(built, "bin", "python", "pmrun"),
			Compat:  filepath.Join(built, "bin", "python", "compat")}},
		{filepath.Join(site, "pmrun", "_bin", "pmrun"), PythonLayout{
			Root: site, Package: filepath.Join(site, "pmrun"), Compat: filepath.Join(site, "pmrun", "_compat")}},
	} {
		got, ok := pythonNextTo(tc.exe)
		if !ok || got != tc.want {
			t.Errorf("pythonNextTo(%s) = %+v, %v; want %+v", tc.exe, got, ok, tc.want)
		}
	}
	if got, ok := pythonNextTo(filepath.Join(t.TempDir(), "pmrun")); ok {
		t.Errorf("a launcher alone: found %+v", got)
	}
}
