package main

import (
	"archive/tar"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// TestTheImageIsRealAndRunsAsNonRoot builds the archive make image builds,
// validates it with go-containerregistry's validator, unpacks its root
// filesystem and runs the entrypoint there as uid 65532.
func TestTheImageIsRealAndRunsAsNonRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("running the image's entrypoint as uid 65532 needs root; run make test as root")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "alumiini.oci.tar")
	wd, _ := os.Getwd()
	if err := os.Chdir("../.."); err != nil { // the module root, where make image runs
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	err := run(options{caCerts: "/etc/ssl/certs/ca-certificates.crt", out: out, version: "v0.0.0-test", commit: "0123abc",
		created: "2026-11-27T00:00:00Z", src: "https://github.com/falsesystems/alumiini"})
	if err != nil {
		t.Fatal(err)
	}
	ociDir := filepath.Join(dir, "oci")
	untar(t, out, ociDir)
	index, err := layout.ImageIndexFromPath(ociDir)
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := index.IndexManifest()
	if err != nil || len(manifest.Manifests) != 1 {
		t.Fatalf("the archive's index: %+v %v", manifest, err)
	}
	img, err := index.Image(manifest.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("the image does not validate: %v", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" || len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != "/alumiini" ||
		cfg.Config.Labels["org.opencontainers.image.version"] != "v0.0.0-test" {
		t.Errorf("config: %+v", cfg.Config)
	}
	if _, ok := cfg.Config.Volumes["/var/lib/alumiini"]; !ok {
		t.Errorf("no /var/lib/alumiini volume: %v", cfg.Config.Volumes)
	}

	rootfs := filepath.Join(dir, "rootfs")
	extract(t, mutate.Extract(img), rootfs)
	for _, d := range []string{filepath.Dir(dir), dir} { // let the non-root user reach the unpacked root
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"version"}, {"--help"}} {
		cmd := exec.Command(filepath.Join(rootfs, "alumiini"), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
		cmd.Env = []string{"HOME=/home/nonroot"}
		got, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("/alumiini %v as uid 65532: %v\n%s", args, err, got)
		}
		if args[0] == "version" && !strings.Contains(string(got), "alumiini v0.0.0-test") {
			t.Errorf("version: %s", got)
		}
		if args[0] == "--help" && !strings.Contains(string(got), "--webhook-bind-address") {
			t.Errorf("--help lacks the webhook flags")
		}
	}
	// The static binary and the CA bundle are where the image promises.
	for _, f := range []string{"etc/ssl/certs/ca-certificates.crt", "etc/passwd"} {
		if _, err := os.Stat(filepath.Join(rootfs, f)); err != nil {
			t.Error(err)
		}
	}
}

func untar(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	extract(t, f, dir)
}

// extract unpacks a tar stream into dir (regular files and directories).
func extract(t *testing.T, r io.Reader, dir string) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, filepath.Clean("/"+hdr.Name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, data, os.FileMode(hdr.Mode)&0o777); err != nil {
				t.Fatal(err)
			}
		}
	}
}
