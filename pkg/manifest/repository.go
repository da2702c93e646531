package manifest

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/falsesystems/alumiini/pkg/git"
)

// ReadFunc returns the files under path (slash-separated, relative to the
// repository root, "" for the root), with paths relative to path. pkg/git's
// confined tree reader is the real one; FilesReader serves a fixed set.
type ReadFunc func(ctx context.Context, path string) ([]git.File, error)

// FilesReader returns a ReadFunc serving a fixed in-memory repository, for
// tests of code that renders: files have paths relative to the repository
// root. Like pkg/git, it refuses paths that leave the repository, fails on a
// path that holds no file, and returns files sorted by path.
func FilesReader(files []git.File) ReadFunc {
	sorted := append([]git.File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	return func(ctx context.Context, dir string) ([]git.File, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dir, err := cleanDir(dir)
		if err != nil {
			return nil, err
		}
		var out []git.File
		for _, f := range sorted {
			if rel, ok := under(dir, f.Path); ok {
				out = append(out, git.File{Path: rel, Data: f.Data})
			}
		}
		if len(out) == 0 && dir != "" {
			return nil, fmt.Errorf("path %q not found in the repository", dir)
		}
		return out, nil
	}
}

// under returns p relative to dir, if p is inside dir.
func under(dir, p string) (string, bool) {
	if dir == "" {
		return p, true
	}
	return strings.CutPrefix(p, dir+"/")
}

// cleanDir checks that dir is a plain relative path inside the repository
// and returns it cleaned, "" for the root. pkg/git refuses the same paths;
// refusing them here too keeps Render safe with any ReadFunc.
func cleanDir(dir string) (string, error) {
	if strings.HasPrefix(dir, "/") || strings.ContainsAny(dir, "\\\x00") {
		return "", &Error{Source: dir, Message: "path must be relative to the repository root"}
	}
	for _, segment := range strings.Split(dir, "/") {
		if segment == ".." {
			return "", &Error{Source: dir, Message: "path leaves the repository"}
		}
	}
	if c := path.Clean(dir); c != "." {
		return c, nil
	}
	return "", nil
}

// readError reports a failed read of dir; a read cut short by ctx says so.
func readError(ctx context.Context, dir string, err error) error {
	if ctx.Err() != nil {
		return stopped(displayDir(dir), ctx.Err())
	}
	return &Error{Source: displayDir(dir), Message: "reading: " + err.Error(), Err: err}
}

// stopped is the error of a Render whose ctx ended.
func stopped(source string, err error) error {
	return &Error{Source: source, Message: "rendering stopped: " + err.Error(), Err: err}
}

func displayDir(dir string) string {
	if dir == "" {
		return "the repository root"
	}
	return dir
}

// kustomizationFile returns the name of the kustomization file at the top
// of files (paths relative to the directory read), or "".
func kustomizationFile(files []git.File) string {
	for _, f := range files {
		for _, name := range konfig.RecognizedKustomizationFileNames() {
			if f.Path == name {
				return name
			}
		}
	}
	return ""
}

// repository is every file of one commit, indexed for the preflight and
// copied into the in-memory file system kustomize builds over.
type repository struct {
	files map[string][]byte // by path relative to the root
	dirs  map[string]bool   // every directory holding a file, "" for the root
}

func newRepository(files []git.File) *repository {
	r := &repository{files: make(map[string][]byte, len(files)), dirs: map[string]bool{"": true}}
	for _, f := range files {
		r.files[f.Path] = f.Data
		for d := path.Dir(f.Path); d != "." && !r.dirs[d]; d = path.Dir(d) {
			r.dirs[d] = true
		}
	}
	return r
}

// kustomizationIn returns the path of the kustomization file in dir, "" if
// there is none; several are an error, as they are to kustomize.
func (r *repository) kustomizationIn(dir string) (string, error) {
	var found []string
	for _, name := range konfig.RecognizedKustomizationFileNames() {
		if p := path.Join(dir, name); r.hasFile(p) {
			found = append(found, p)
		}
	}
	if len(found) > 1 {
		return "", &Error{Source: found[0], Message: fmt.Sprintf("%s holds several kustomization files: %s",
			displayDir(dir), strings.Join(found, ", "))}
	}
	if len(found) == 0 {
		return "", nil
	}
	return found[0], nil
}

// kustomizationSource names the kustomization in dir for messages.
func (r *repository) kustomizationSource(dir string) string {
	if file, err := r.kustomizationIn(dir); err == nil && file != "" {
		return file
	}
	return path.Join(dir, "kustomization.yaml")
}

func (r *repository) hasFile(p string) bool {
	_, ok := r.files[p]
	return ok
}

// fileSystem holds exactly the repository's files, rooted at "/": whatever
// path kustomize resolves, ".." past the root and absolute ones included,
// lands inside it, so no file outside the repository can be read.
func (r *repository) fileSystem() (filesys.FileSystem, error) {
	fs := filesys.MakeFsInMemory()
	for p, data := range r.files {
		if err := fs.MkdirAll(path.Dir("/" + p)); err != nil {
			return nil, fmt.Errorf("copying %s: %w", p, err)
		}
		if err := fs.WriteFile("/"+p, data); err != nil {
			return nil, fmt.Errorf("copying %s: %w", p, err)
		}
	}
	return fs, nil
}

// resolve returns the repository path that location, written in the
// kustomization in dir, names on that file system: relative to dir, or to
// the root if absolute. Cleaning a rooted path drops ".." past the root, as
// the in-memory file system does, so the result is always inside the
// repository ("" for the root).
func resolve(dir, location string) string {
	p := location
	if !path.IsAbs(p) {
		p = path.Join("/", dir, p)
	}
	return strings.TrimPrefix(path.Clean(p), "/")
}
