// Command image builds alumiini's container image as an OCI image archive,
// without a Docker engine or a registry: a static binary (CGO off, version
// stamped) on an empty base with CA certificates and a non-root user, laid
// out as the Dockerfile's image is. `make image` runs it; load the archive
// with `skopeo copy oci-archive:... docker://...` or `podman load`.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's user: distroless's "nonroot".
const (
	uid      = 65532
	userName = "nonroot"
)

type options struct {
	binary, caCerts, out          string
	version, commit, created, src string
}

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "", "a static alumiini binary (built when empty)")
	flag.StringVar(&o.caCerts, "ca-certificates", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to put in the image")
	flag.StringVar(&o.out, "out", "_output/image/alumiini.oci.tar", "where to write the OCI image archive")
	flag.StringVar(&o.version, "version", "unknown", "version label and stamp")
	flag.StringVar(&o.commit, "commit", "unknown", "git commit label and stamp")
	flag.StringVar(&o.created, "created", time.Now().UTC().Format(time.RFC3339), "creation time")
	flag.StringVar(&o.src, "source", "https://github.com/falsesystems/alumiini", "source repository label")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Println(o.out)
}

func run(o options) error {
	if o.binary == "" {
		dir, err := os.MkdirTemp("", "alumiini-image-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.binary = filepath.Join(dir, "alumiini")
		if err := buildStatic(o.binary, o.version, o.commit, o.created); err != nil {
			return err
		}
	}
	img, err := build(o)
	if err != nil {
		return err
	}
	return writeArchive(img, o.out)
}

// buildStatic builds alumiini as the Dockerfile does.
func buildStatic(out, version, commit, created string) error {
	pkg := "github.com/falsesystems/alumiini/pkg/version"
	ldflags := fmt.Sprintf("-s -w -X %[1]s.Version=%[2]s -X %[1]s.Commit=%[3]s -X %[1]s.BuildDate=%[4]s", pkg, version, commit, created)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, "./cmd/alumiini")
	// The image is labelled linux/GOARCH of this machine: built here, so
	// the test can run it here.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building the static binary: %w", err)
	}
	return nil
}

// build assembles the image: one layer with the filesystem, a config that
// runs /alumiini as the non-root user with /var/lib/alumiini as a volume.
func build(o options) (v1.Image, error) {
	binary, err := os.ReadFile(o.binary)
	if err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(o.caCerts)
	if err != nil {
		return nil, fmt.Errorf("reading CA certificates: %w", err)
	}
	layer, err := rootfs(binary, ca)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	created, _ := time.Parse(time.RFC3339, o.created)
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS, cfg.Created = runtime.GOARCH, "linux", v1.Time{Time: created}
	cfg.Config.Entrypoint = []string{"/alumiini"}
	cfg.Config.User = fmt.Sprintf("%d:%d", uid, uid)
	cfg.Config.WorkingDir = "/"
	cfg.Config.Env = []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	cfg.Config.Volumes = map[string]struct{}{"/var/lib/alumiini": {}}
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.title":    "alumiini",
		"org.opencontainers.image.version":  o.version,
		"org.opencontainers.image.revision": o.commit,
		"org.opencontainers.image.created":  o.created,
		"org.opencontainers.image.source":   o.src,
		"org.opencontainers.image.licenses": "Apache-2.0",
	}
	return mutate.ConfigFile(img, cfg)
}

// rootfs is the image's one layer.
func rootfs(binary, ca []byte) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	dirs := []struct {
		name  string
		owner int
		mode  int64
	}{{"etc/", 0, 0o755}, {"etc/ssl/", 0, 0o755}, {"etc/ssl/certs/", 0, 0o755}, {"tmp/", 0, 0o1777},
		{"var/", 0, 0o755}, {"var/lib/", 0, 0o755}, {"var/lib/alumiini/", uid, 0o700}, {"home/", 0, 0o755}, {"home/nonroot/", uid, 0o700}}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d.name, Mode: d.mode, Uid: d.owner, Gid: d.owner, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"etc/passwd", 0o644, []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:%s:/home/%s:/sbin/nologin\n", userName, uid, uid, userName, userName))},
		{"etc/group", 0o644, []byte(fmt.Sprintf("root:x:0:\n%s:x:%d:\n", userName, uid))},
		{"etc/ssl/certs/ca-certificates.crt", 0o644, ca},
		{"alumiini", 0o755, binary},
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// writeArchive writes img as an OCI image layout, tarred (an oci-archive).
func writeArchive(img v1.Image, out string) error {
	dir, err := os.MkdirTemp("", "alumiini-oci-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := path.AppendImage(img); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	return tarDir(dir, out)
}

func tarDir(dir, out string) error {
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if cerr := tw.Close(); err == nil {
		err = cerr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out + ".tmp")
		return err
	}
	return os.Rename(out+".tmp", out)
}
