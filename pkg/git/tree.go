package git

import (
	"fmt"
	"io"
	"path"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Limits bound what is read from one commit, so a hostile or mistaken
// repository cannot exhaust memory.
type Limits struct {
	MaxTotalBytes int64
	MaxFiles      int
	MaxFileBytes  int64
	MaxDepth      int
}

// Defaults of Limits.
const (
	DefaultMaxTotalBytes = 64 << 20
	DefaultMaxFiles      = 10000
	DefaultMaxFileBytes  = 4 << 20
	DefaultMaxDepth      = 32
	maxSymlinkHops       = 40
)

func (l Limits) withDefaults() Limits {
	if l.MaxTotalBytes == 0 {
		l.MaxTotalBytes = DefaultMaxTotalBytes
	}
	if l.MaxFiles == 0 {
		l.MaxFiles = DefaultMaxFiles
	}
	if l.MaxFileBytes == 0 {
		l.MaxFileBytes = DefaultMaxFileBytes
	}
	if l.MaxDepth == 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}

// Tree is the content of one path of one commit.
type Tree struct {
	Commit string
	// Files are sorted by path, relative to the path asked for. Symlinks that
	// resolve inside the repository appear as the file they point to.
	Files []File
}

// File is one regular file.
type File struct {
	Path string
	Data []byte
}

// reader walks a commit's tree objects straight from the object store: no
// work tree is written, and every path, symlinks included, is resolved
// against the repository root, so nothing outside it can be reached.
type reader struct {
	repo   *gogit.Repository
	root   *object.Tree
	limits Limits
	files  []File
	total  int64
}

func readTree(repo *gogit.Repository, hash plumbing.Hash, dir string, limits Limits) (*Tree, error) {
	commit, err := repo.CommitObject(hash)
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", hash, err)
	}
	root, err := commit.Tree()
	if err != nil {
		return nil, fmt.Errorf("reading the tree of commit %s: %w", hash, err)
	}
	r := &reader{repo: repo, root: root, limits: limits}
	clean := strings.Trim(path.Clean("/"+dir), "/")
	if strings.Contains(dir, "\\") || strings.Contains(dir, "\x00") {
		return nil, newError(ReasonUnsafeContent, nil, "path %q is not a plain relative path", dir)
	}
	for _, segment := range strings.Split(dir, "/") {
		if segment == ".." {
			return nil, newError(ReasonUnsafeContent, nil, "path %q leaves the repository", dir)
		}
	}
	resolved, entry, err := r.resolve(clean, dir)
	if err != nil {
		return nil, err
	}
	if entry != nil && entry.Mode != filemode.Dir {
		return nil, newError(ReasonPathNotFound, nil, "path %q is a file, not a directory, in commit %s", dir, shortHash(hash))
	}
	if err := r.walkDir(resolved, "", 0, 0); err != nil {
		return nil, err
	}
	return &Tree{Commit: hash.String(), Files: r.files}, nil
}

// resolve follows p (slash-separated, relative to the repository root) through
// the tree, symlinks included, and returns the resolved path and its entry
// (nil for the root). shown is the path as the user knows it, for errors.
func (r *reader) resolve(p, shown string) (string, *object.TreeEntry, error) {
	var stack []string
	var entry *object.TreeEntry
	pending := splitPath(p)
	for hops := 0; len(pending) > 0; {
		name := pending[0]
		pending = pending[1:]
		switch name {
		case ".":
			continue
		case "..":
			if len(stack) == 0 {
				return "", nil, newError(ReasonUnsafeContent, nil, "%s resolves outside the repository", shown)
			}
			stack = stack[:len(stack)-1]
			entry = nil
			continue
		}
		dir, err := r.dirTree(stack)
		if err != nil {
			return "", nil, newError(ReasonPathNotFound, err, "%s: %s is not a directory", shown, strings.Join(stack, "/"))
		}
		e, err := dir.FindEntry(name)
		if err != nil {
			return "", nil, newError(ReasonPathNotFound, nil, "%s not found in the repository", shown)
		}
		if e.Mode == filemode.Symlink {
			hops++
			if hops > maxSymlinkHops {
				return "", nil, newError(ReasonUnsafeContent, nil, "%s: too many levels of symbolic links", shown)
			}
			target, err := r.blobText(e.Hash, 4096)
			if err != nil {
				return "", nil, err
			}
			if strings.HasPrefix(target, "/") {
				return "", nil, newError(ReasonUnsafeContent, nil, "%s is a symlink to %s, outside the repository", shown, target)
			}
			pending = append(splitPath(target), pending...)
			continue
		}
		stack = append(stack, name)
		entry = e
		if e.Mode != filemode.Dir && len(pending) > 0 {
			return "", nil, newError(ReasonPathNotFound, nil, "%s: %s is not a directory", shown, strings.Join(stack, "/"))
		}
	}
	return strings.Join(stack, "/"), entry, nil
}

func (r *reader) dirTree(stack []string) (*object.Tree, error) {
	if len(stack) == 0 {
		return r.root, nil
	}
	return r.root.Tree(strings.Join(stack, "/"))
}

// walkDir reads every file under the resolved directory dir, naming them
// below shown (the path under spec.path).
func (r *reader) walkDir(dir, shown string, depth, linkDepth int) error {
	if depth > r.limits.MaxDepth {
		return newError(ReasonLimitExceeded, nil, "%s is nested deeper than the limit of %d directories", displayPath(shown), r.limits.MaxDepth)
	}
	tree, err := r.dirTree(splitPath(dir))
	if err != nil {
		return newError(ReasonPathNotFound, err, "%s is not a directory", displayPath(shown))
	}
	for _, e := range tree.Entries {
		name := path.Join(shown, e.Name)
		physical := path.Join(dir, e.Name)
		switch e.Mode {
		case filemode.Dir:
			if err := r.walkDir(physical, name, depth+1, linkDepth); err != nil {
				return err
			}
		case filemode.Regular, filemode.Executable, filemode.Deprecated:
			if err := r.addFile(name, e.Hash); err != nil {
				return err
			}
		case filemode.Symlink:
			target, entry, err := r.resolve(physical, name)
			if err != nil {
				return err
			}
			if entry == nil || entry.Mode == filemode.Dir {
				// A link to a directory inside the repository: read it under
				// the link's name; the depth limit stops a link loop.
				if linkDepth >= maxSymlinkHops {
					return newError(ReasonUnsafeContent, nil, "%s: too many levels of symbolic links", name)
				}
				if err := r.walkDir(target, name, depth+1, linkDepth+1); err != nil {
					return err
				}
				continue
			}
			if err := r.addFile(name, entry.Hash); err != nil {
				return err
			}
		default:
			// Submodules (gitlinks) carry no content of this repository.
		}
	}
	return nil
}

func (r *reader) addFile(name string, hash plumbing.Hash) error {
	if len(r.files) >= r.limits.MaxFiles {
		return newError(ReasonLimitExceeded, nil, "more than the limit of %d files under the path (at %s)", r.limits.MaxFiles, name)
	}
	blob, err := r.repo.BlobObject(hash)
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	if blob.Size > r.limits.MaxFileBytes {
		return newError(ReasonLimitExceeded, nil, "%s is %d bytes, over the limit of %d bytes for one file", name, blob.Size, r.limits.MaxFileBytes)
	}
	if r.total+blob.Size > r.limits.MaxTotalBytes {
		return newError(ReasonLimitExceeded, nil, "the files under the path exceed the limit of %d bytes in total (at %s)", r.limits.MaxTotalBytes, name)
	}
	data, err := readBlob(blob, r.limits.MaxFileBytes)
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	r.total += int64(len(data))
	r.files = append(r.files, File{Path: name, Data: data})
	return nil
}

func (r *reader) blobText(hash plumbing.Hash, max int64) (string, error) {
	blob, err := r.repo.BlobObject(hash)
	if err != nil {
		return "", err
	}
	data, err := readBlob(blob, max)
	return string(data), err
}

func readBlob(blob *object.Blob, max int64) ([]byte, error) {
	rd, err := blob.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(io.LimitReader(rd, max))
}

func splitPath(p string) []string {
	var out []string
	for _, s := range strings.Split(p, "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

func displayPath(p string) string {
	if p == "" {
		return "the path"
	}
	return p
}

func shortHash(h plumbing.Hash) string { return h.String()[:7] }
