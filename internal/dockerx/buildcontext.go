package dockerx

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// contextTime is the modification time of the in-memory files of a build
// context, fixed so that the same content yields the same tar.
var contextTime = time.Unix(0, 0)

// BuildContext makes a tar build context for Engine.BuildImage. files maps a
// path in the context to a file or directory on disk; directories are copied
// recursively, modes are kept, and symbolic links inside directories stay
// links. extra maps a path
// in the context to the content of a file with mode 0644. Paths in the context
// are slash-separated and relative; no path may come twice. Owners are root.
// The context is built in memory.
func BuildContext(files map[string]string, extra map[string][]byte) (io.Reader, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := make(map[string]bool)
	add := func(hdr *tar.Header) error {
		if seen[hdr.Name] {
			return fmt.Errorf("dockerx: build context: %s comes twice", hdr.Name)
		}
		seen[hdr.Name] = true
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if hdr.Typeflag == tar.TypeDir {
			hdr.Name += "/"
		}
		return tw.WriteHeader(hdr)
	}

	for _, dst := range slices.Sorted(maps.Keys(files)) {
		name, err := contextPath(dst)
		if err != nil {
			return nil, err
		}
		if err := addTree(tw, add, name, files[dst]); err != nil {
			return nil, err
		}
	}
	for _, dst := range slices.Sorted(maps.Keys(extra)) {
		name, err := contextPath(dst)
		if err != nil {
			return nil, err
		}
		data := extra[dst]
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: contextTime}
		if err := add(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, fmt.Errorf("dockerx: build context: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("dockerx: build context: %w", err)
	}
	return &buf, nil
}

// contextPath cleans p, a path in a build context, and rejects one that is
// empty, absolute or leaves the context.
func contextPath(p string) (string, error) {
	c := path.Clean(p)
	if p == "" || path.IsAbs(p) || c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("dockerx: build context: bad path %q", p)
	}
	return c, nil
}

// addTree writes the file or directory tree at src to tw under name. If src
// itself is a symbolic link, it is followed.
func addTree(tw *tar.Writer, add func(*tar.Header) error, name, src string) error {
	src, err := filepath.EvalSymlinks(src)
	if err != nil {
		return fmt.Errorf("dockerx: build context: %w", err)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("dockerx: build context: %w", err)
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return fmt.Errorf("dockerx: build context: %w", err)
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("dockerx: build context: %w", err)
		}
		var link string
		switch {
		case info.Mode().IsRegular(), info.IsDir():
		case info.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(p); err != nil {
				return fmt.Errorf("dockerx: build context: %w", err)
			}
		default:
			return fmt.Errorf("dockerx: build context: %s is not a regular file, directory or link", p)
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return fmt.Errorf("dockerx: build context: %s: %w", p, err)
		}
		hdr.Name = path.Join(name, filepath.ToSlash(rel))
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		if err := add(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("dockerx: build context: %w", err)
		}
		defer f.Close()
		if _, err := io.CopyN(tw, f, hdr.Size); err != nil {
			return fmt.Errorf("dockerx: build context: %s: %w", p, err)
		}
		return nil
	})
}
