package node

import (
	"archive/tar"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/zstd"
)

// Bundles: a zstd-compressed tar of the program and the --files directory.

// DefaultMaxBundle bounds what an agent unpacks from one job (the tar
// stream, once decompressed) unless AgentConfig.MaxBundle says otherwise: a
// small bundle that decompresses past it (a decompression bomb) is refused
// with ErrBundleLarge, not unpacked to the end of the disk.
const DefaultMaxBundle = 8 << 30

// ErrBundleLarge is returned for a bundle that unpacks to more than the
// agent's limit.
var ErrBundleLarge = errors.New("bundle over the limit")

// bundleKnob names what sets an agent's bundle limit, for its errors.
const bundleKnob = "AgentConfig.MaxBundle: pmrun node --max-bundle, PMRUN_MAX_BUNDLE"

// extractBundle unpacks a bundle into dir, refusing paths that leave it and
// more than max bytes of tar stream (0: DefaultMaxBundle).
func extractBundle(r io.Reader, dir string, max int64) error {
	max = cmp.Or(max, DefaultMaxBundle)
	zr, err := zstd.NewReader(r, zstd.WithDecoderMaxMemory(64<<20))
	if err != nil {
		return err
	}
	defer zr.Close()
	tr := tar.NewReader(&capped{r: zr, left: max, max: max})
	links := map[string]bool{} // the links made so far: nothing is written through one
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("bundle entry %q leaves the job directory", h.Name)
		}
		for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
			if links[d] {
				return fmt.Errorf("bundle entry %q is under the link %q", h.Name, d)
			}
		}
		p := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeSymlink:
			target := filepath.Join(filepath.Dir(name), h.Linkname)
			if filepath.IsAbs(h.Linkname) || target == ".." || strings.HasPrefix(target, "../") {
				return fmt.Errorf("bundle entry %q links to %q, outside the job directory", h.Name, h.Linkname)
			}
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
			links[name] = true
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&0o755|0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("bundle entry %q: only files, directories and links are shipped", h.Name)
		}
	}
}

// capped reads r until left bytes have gone by, then fails with
// ErrBundleLarge.
type capped struct {
	r         io.Reader
	left, max int64
}

func (c *capped) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("%w: it unpacks to more than %d bytes (%s)", ErrBundleLarge, c.max, bundleKnob)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// ErrLinkOutside is returned for a link in a --files directory whose target
// is outside that directory: the nodes would not have it.
var ErrLinkOutside = errors.New("links outside the directory")

// Limits of a script's directory shipped with it when no --files is given.
const (
	ScriptDirMaxFiles = 1000
	ScriptDirMaxBytes = 10 << 20
)

// ErrScriptDirLarge is returned by ScriptDirSize for a directory past the
// limits.
var ErrScriptDirLarge = fmt.Errorf("more than %d files or %d MiB", ScriptDirMaxFiles, ScriptDirMaxBytes>>20)

// ScriptDirSize returns the number of files and bytes of dir that ship with a
// script found there (hidden directories, __pycache__ and virtual
// environments stay home, and links that leave dir), or ErrScriptDirLarge.
func ScriptDirSize(dir string) (files int, size int64, err error) {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return 0, 0, err
	}
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root && stayHome(p, d) {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files, size = files+1, size+fi.Size()
		if files > ScriptDirMaxFiles || size > ScriptDirMaxBytes {
			return ErrScriptDirLarge
		}
		return nil
	})
	return files, size, err
}

// stayHome tells whether p, a directory in a script's directory, is left out
// of what ships with the script: a hidden directory, __pycache__, or a
// virtual environment.
func stayHome(p string, d os.DirEntry) bool {
	if strings.HasPrefix(d.Name(), ".") || d.Name() == "__pycache__" {
		return true
	}
	_, err := os.Stat(filepath.Join(p, "pyvenv.cfg"))
	return err == nil
}

// writeBundle writes the bundle: the program (if any) as name prog, and the
// files under dir (if any) at the top. A dir that is a link is followed;
// links inside it are shipped as links when their target is in dir too, and
// refused (ErrLinkOutside) when it is not. With ofScript, dir is the
// script's own directory: what ScriptDirSize leaves out stays home.
func writeBundle(w io.Writer, progPath, prog, dir string, ofScript bool) error {
	zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	if dir != "" {
		if err := addTree(tw, dir, prog, ofScript); err != nil {
			if ofScript {
				return fmt.Errorf("the script's directory %s: %w", dir, err)
			}
			return fmt.Errorf("--files %s: %w", dir, err)
		}
	}
	if progPath != "" {
		fi, err := os.Stat(progPath)
		if err != nil {
			return err
		}
		if err := addFile(tw, progPath, prog, fi); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func addFile(tw *tar.Writer, path, name string, fi os.FileInfo) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: int64(fi.Mode().Perm()), Size: fi.Size()}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// addTree adds the files, directories and links under dir, except the one
// named prog (the program wins) and, with ofScript, what stays home.
func addTree(tw *tar.Writer, dir, prog string, ofScript bool) error {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." || rel == prog {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		switch {
		case d.IsDir() && ofScript && stayHome(p, d):
			return filepath.SkipDir
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o700})
		case fi.Mode().IsRegular():
			return addFile(tw, p, name, fi)
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := linkInside(root, p, rel)
			if errors.Is(err, ErrLinkOutside) && ofScript {
				return nil
			}
			if err != nil {
				return err
			}
			return tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: filepath.ToSlash(target), Mode: 0o777})
		}
		return nil // sockets, devices, pipes: not shipped
	})
}

// linkInside returns the target of the link p (rel in root) relative to its
// directory, if it resolves to a path in root.
func linkInside(root, p, rel string) (string, error) {
	to, _ := os.Readlink(p)
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("%s: broken link to %s: %w", rel, to, err)
	}
	in, err := filepath.Rel(root, resolved)
	if err != nil || in == ".." || strings.HasPrefix(in, "../") {
		return "", fmt.Errorf("%s -> %s: %w (the nodes would not have %s; copy it into the directory, or ship its own directory with --files)",
			rel, to, ErrLinkOutside, resolved)
	}
	return filepath.Rel(filepath.Dir(rel), in)
}
