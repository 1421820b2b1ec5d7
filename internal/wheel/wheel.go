// Package wheel writes Python wheels: pmrun's own (Build: the Python
// package, libpmrun.so, the mpi4py-compatible package and the launcher, with
// `pmrun` as a console command), and any small one from files in memory
// (Write), with the metadata and RECORD that pip checks.
package wheel

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// File is one file of a wheel: its path in the archive, contents and mode.
type File struct {
	Name string
	Data []byte
	Mode fs.FileMode
}

// Spec names a wheel and says what it installs.
type Spec struct {
	Name, Version string
	Tag           string // e.g. py3-none-any, py3-none-linux_x86_64
	Purelib       bool
	Summary       string
	Scripts       map[string]string // console command -> module:function
}

// FileName is the wheel's file name, which pip parses.
func (s Spec) FileName() string {
	return fmt.Sprintf("%s-%s-%s.whl", s.Name, s.Version, s.Tag)
}

// stamp is every entry's time: the same inputs make the same bytes.
var stamp = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// Write writes the wheel of spec with files (and its .dist-info) into dir and
// returns its path.
func Write(dir string, spec Spec, files []File) (string, error) {
	info := fmt.Sprintf("%s-%s.dist-info/", spec.Name, spec.Version)
	meta := fmt.Sprintf("Metadata-Version: 2.1\nName: %s\nVersion: %s\n", spec.Name, spec.Version)
	if spec.Summary != "" {
		meta += "Summary: " + spec.Summary + "\n"
	}
	files = append(slices.Clone(files),
		File{Name: info + "METADATA", Data: []byte(meta)},
		File{Name: info + "WHEEL", Data: fmt.Appendf(nil, "Wheel-Version: 1.0\nGenerator: pmrun\nRoot-Is-Purelib: %v\nTag: %s\n", spec.Purelib, spec.Tag)})
	if len(spec.Scripts) > 0 {
		var b strings.Builder
		b.WriteString("[console_scripts]\n")
		for _, name := range slices.Sorted(maps.Keys(spec.Scripts)) {
			fmt.Fprintf(&b, "%s = %s\n", name, spec.Scripts[name])
		}
		files = append(files, File{Name: info + "entry_points.txt", Data: []byte(b.String())})
	}
	var record strings.Builder
	var buf bytes.Buffer
	z := zip.NewWriter(&buf)
	for _, f := range files {
		if err := add(z, f); err != nil {
			return "", err
		}
		sum := sha256.Sum256(f.Data)
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", f.Name, base64.RawURLEncoding.EncodeToString(sum[:]), len(f.Data))
	}
	fmt.Fprintf(&record, "%sRECORD,,\n", info)
	if err := add(z, File{Name: info + "RECORD", Data: []byte(record.String())}); err != nil {
		return "", err
	}
	if err := z.Close(); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, spec.FileName())
	return out, os.WriteFile(out, buf.Bytes(), 0o644)
}

func add(z *zip.Writer, f File) error {
	mode := f.Mode
	if mode == 0 {
		mode = 0o644
	}
	h := &zip.FileHeader{Name: f.Name, Method: zip.Deflate, Modified: stamp}
	h.SetMode(mode) // pip keeps the executable bit
	w, err := z.CreateHeader(h)
	if err != nil {
		return fmt.Errorf("wheel: %s: %w", f.Name, err)
	}
	_, err = w.Write(f.Data)
	return err
}

// PlatformTag is the wheel tag of a package with this machine's native code
// and no CPython-specific module that must load: py3-none-linux_<arch>.
func PlatformTag() string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	return "py3-none-" + runtime.GOOS + "_" + arch
}

// Build writes pmrun's wheel from a `make build` tree bin (bin/pmrun,
// bin/python/pmrun with libpmrun.so, bin/python/compat) into dir: the package
// pmrun, with the launcher as pmrun/_bin/pmrun, the mpi4py-compatible package
// in pmrun/_compat, and the console command pmrun (pmrun._launch:main), which
// runs that launcher. The launcher finds the package around it.
func Build(bin, version, dir string) (string, error) {
	var files []File
	for _, tree := range []struct{ src, dst string }{
		{filepath.Join(bin, "python", "pmrun"), "pmrun"},
		{filepath.Join(bin, "python", "compat"), "pmrun/_compat"},
	} {
		got, err := readTree(tree.src, tree.dst)
		if err != nil {
			return "", err
		}
		files = append(files, got...)
	}
	if !slices.ContainsFunc(files, func(f File) bool { return f.Name == "pmrun/libpmrun.so" }) {
		return "", fmt.Errorf("wheel: %s has no libpmrun.so (run make build)", filepath.Join(bin, "python", "pmrun"))
	}
	exe, err := os.ReadFile(filepath.Join(bin, "pmrun"))
	if err != nil {
		return "", fmt.Errorf("wheel: the launcher: %w (run make build)", err)
	}
	files = append(files, File{Name: "pmrun/_bin/pmrun", Data: exe, Mode: 0o755})
	return Write(dir, Spec{
		Name: "pmrun", Version: version, Tag: PlatformTag(),
		Summary: "A hybrid MPI-style runtime: pmrun -np N script.py, an mpi4py-compatible API, task mode",
		Scripts: map[string]string{"pmrun": "pmrun._launch:main"},
	}, files)
}

// readTree reads the files under src (not compiled caches) as dst/...,
// in a stable order, keeping their executable bits.
func readTree(src, dst string) ([]File, error) {
	var files []File
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "__pycache__" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasSuffix(p, ".pyc") {
			return nil
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files = append(files, File{Name: path.Join(dst, filepath.ToSlash(rel)), Data: data, Mode: fi.Mode().Perm()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("wheel: %w (run make build)", err)
	}
	return files, nil
}
