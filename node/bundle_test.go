package node

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// bundleOf is a bundle of the given tar entries, each with its body.
func bundleOf(t testing.TB, entries []tar.Header, bodies []string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, _ := zstd.NewWriter(&b)
	tw := tar.NewWriter(zw)
	for i, h := range entries {
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		body := ""
		if i < len(bodies) {
			body = bodies[i]
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	return b.Bytes()
}

// TestExtractBundleRefuses: paths that leave the job directory, entry types
// that are not shipped, and bundles past the limit are refused with an error
// naming the entry; nothing is written outside the directory.
func TestExtractBundleRefuses(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []tar.Header
		bad     string
	}{
		{"parent", []tar.Header{{Name: "../escape", Typeflag: tar.TypeReg}}, `"../escape" leaves the job directory`},
		{"deep parent", []tar.Header{{Name: "a/b/../../../escape", Typeflag: tar.TypeReg}}, "leaves the job directory"},
		{"absolute", []tar.Header{{Name: "/tmp/escape", Typeflag: tar.TypeReg}}, "leaves the job directory"},
		{"hard link", []tar.Header{{Name: "h", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}}, "only files, directories and links"},
		{"device", []tar.Header{{Name: "dev", Typeflag: tar.TypeChar}}, "only files, directories and links"},
		{"fifo", []tar.Header{{Name: "p", Typeflag: tar.TypeFifo}}, "only files, directories and links"},
		{"link chain up", []tar.Header{{Name: "a/l", Typeflag: tar.TypeSymlink, Linkname: "../.."}}, "outside the job directory"},
		{"file through link", []tar.Header{{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "."}, {Name: "l/x", Typeflag: tar.TypeReg}}, "under the link"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "job")
			os.Mkdir(dir, 0o700)
			err := extractBundle(bytes.NewReader(bundleOf(t, tc.entries, nil)), dir, DefaultMaxBundle)
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("got %v, want an error with %q", err, tc.bad)
			}
			if got, _ := os.ReadDir(parent); len(got) != 1 {
				t.Errorf("the parent directory holds %d entries, want only the job's", len(got))
			}
		})
	}
}

// TestExtractBundleBomb: a bundle of a few KiB that decompresses past the
// limit is refused with ErrBundleLarge.
func TestExtractBundleBomb(t *testing.T) {
	big := strings.Repeat("0", 4<<20)
	b := bundleOf(t, []tar.Header{{Name: "zeros", Typeflag: tar.TypeReg}}, []string{big})
	if len(b) > 64<<10 {
		t.Fatalf("the bundle is %d bytes, not small", len(b))
	}
	err := extractBundle(bytes.NewReader(b), t.TempDir(), 1<<20)
	if !errors.Is(err, ErrBundleLarge) {
		t.Errorf("got %v, want ErrBundleLarge", err)
	}
	if err := extractBundle(bytes.NewReader(b), t.TempDir(), 8<<20); err != nil {
		t.Errorf("under the limit: %v", err)
	}
}

// FuzzExtractBundle: whatever the bytes, extracting them never panics and
// never writes outside the job directory.
func FuzzExtractBundle(f *testing.F) {
	f.Add(bundleOf(f, []tar.Header{{Name: "d/", Typeflag: tar.TypeDir}, {Name: "d/f", Typeflag: tar.TypeReg}}, []string{"", "data"}))
	f.Add(bundleOf(f, []tar.Header{{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "d"}, {Name: "l/f", Typeflag: tar.TypeReg}}, nil))
	f.Add(bundleOf(f, []tar.Header{{Name: "../x", Typeflag: tar.TypeReg}}, []string{"x"}))
	f.Add([]byte("not a bundle"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "job")
		os.Mkdir(dir, 0o700)
		extractBundle(bytes.NewReader(data), dir, 1<<20)
		if got, _ := os.ReadDir(parent); len(got) != 1 {
			t.Fatalf("the parent directory holds %d entries", len(got))
		}
	})
}
