package git

import (
	"context"
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
	// MaxEntries bounds the tree entries visited, directories and symlinks
	// included: a tree whose entries all name one subtree, a few levels
	// deep, holds billions of paths and no file to count.
	MaxEntries int
}

// Defaults of Limits.
const (
	DefaultMaxTotalBytes = 64 << 20
	DefaultMaxFiles      = 10000
	DefaultMaxFileBytes  = 4 << 20
	DefaultMaxDepth      = 32
	DefaultMaxEntries    = 100000
	maxSymlinkHops       = 40
	// maxCommitBytes bounds a commit or tag object: its message is read
	// whole, and a few megabytes of pack can inflate to gigabytes.
	maxCommitBytes = 1 << 20
	// maxTreeEntryBytes is more than one tree entry takes (mode, a name of up
	// to 255 bytes, a hash): the trees one read decodes may together take
	// this times MaxEntries, more than a tree within the limit needs.
	maxTreeEntryBytes = 300
	// ctxCheckEvery is how many entries pass between looks at the context.
	ctxCheckEvery = 256
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
	if l.MaxEntries == 0 {
		l.MaxEntries = DefaultMaxEntries
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
// against the repository root, so nothing outside it can be reached. Every
// entry it visits counts toward Limits.MaxEntries, and it stops when ctx
// ends, so a hostile tree costs bounded time under the store's lock.
type reader struct {
	ctx    context.Context
	repo   *gogit.Repository
	root   *object.Tree
	limits Limits
	files  []File
	total  int64
	// entries counts the tree entries visited.
	entries int
	// trees holds each tree decoded once: a tree bomb names one subtree
	// many times. treeBytes is their encoded size, which bounds them.
	trees     map[plumbing.Hash]*object.Tree
	treeBytes int64
	// scope names what is read, for messages: a path, or the whole
	// repository (a kustomization reads it all, so overlays reach bases).
	scope string
}

func readTree(ctx context.Context, repo *gogit.Repository, hash plumbing.Hash, dir string, limits Limits) (*Tree, error) {
	if err := checkPath(dir); err != nil {
		return nil, err
	}
	r := &reader{ctx: ctx, repo: repo, limits: limits, trees: map[plumbing.Hash]*object.Tree{}, scope: scopeOf(dir)}
	if err := checkObjectSize(repo, plumbing.CommitObject, hash, maxCommitBytes); err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", hash, err)
	}
	commit, err := repo.CommitObject(hash)
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", hash, err)
	}
	if r.root, err = r.tree(commit.TreeHash, ""); err != nil {
		return nil, err
	}
	resolved, entry, err := r.resolve(strings.Trim(path.Clean("/"+dir), "/"), dir)
	if err != nil {
		return nil, err
	}
	start := r.root
	if entry != nil {
		if entry.Mode != filemode.Dir {
			return nil, newError(ReasonPathNotFound, nil, "path %q is a file, not a directory, in commit %s", dir, shortHash(hash))
		}
		if start, err = r.tree(entry.Hash, dir); err != nil {
			return nil, err
		}
	}
	if err := r.walkDir(start, resolved, "", 0, 0); err != nil {
		return nil, err
	}
	return &Tree{Commit: hash.String(), Files: r.files}, nil
}

// checkPath refuses a spec.path that is not a plain path inside the
// repository, before anything is read.
func checkPath(dir string) error {
	if strings.Contains(dir, "\\") || strings.Contains(dir, "\x00") {
		return newError(ReasonUnsafeContent, nil, "path %q is not a plain relative path", dir)
	}
	for _, segment := range strings.Split(dir, "/") {
		if segment == ".." {
			return newError(ReasonUnsafeContent, nil, "path %q leaves the repository", dir)
		}
	}
	return nil
}

// resolve follows p (slash-separated, relative to the repository root) through
// the tree, symlinks included, and returns the resolved path and its entry
// (nil for the root). shown is the path as the user knows it, for errors.
// Each step counts as an entry visited, so long link chains are bounded too.
func (r *reader) resolve(p, shown string) (string, *object.TreeEntry, error) {
	var stack []string
	// trees[i] is the directory stack[:i] names; nil after a file.
	trees := []*object.Tree{r.root}
	var entry *object.TreeEntry
	pending := splitPath(p)
	for hops := 0; len(pending) > 0; {
		if err := r.visit(shown); err != nil {
			return "", nil, err
		}
		name := pending[0]
		pending = pending[1:]
		switch name {
		case ".":
			continue
		case "..":
			if len(stack) == 0 {
				return "", nil, newError(ReasonUnsafeContent, nil, "%s resolves outside the repository", shown)
			}
			stack, trees, entry = stack[:len(stack)-1], trees[:len(trees)-1], nil
			continue
		}
		e, err := trees[len(trees)-1].FindEntry(name)
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
		stack, entry = append(stack, name), e
		var sub *object.Tree
		if e.Mode == filemode.Dir {
			if sub, err = r.tree(e.Hash, shown); err != nil {
				return "", nil, err
			}
		} else if len(pending) > 0 {
			return "", nil, newError(ReasonPathNotFound, nil, "%s: %s is not a directory", shown, strings.Join(stack, "/"))
		}
		trees = append(trees, sub)
	}
	return strings.Join(stack, "/"), entry, nil
}

// tree decodes the tree object hash once per read. Trees past
// maxTreeEntryBytes per entry of Limits.MaxEntries in all are refused before
// decoding: a few kilobytes of pack can inflate to a tree of gigabytes.
func (r *reader) tree(hash plumbing.Hash, shown string) (*object.Tree, error) {
	if t, ok := r.trees[hash]; ok {
		return t, nil
	}
	obj, err := r.repo.Storer.EncodedObject(plumbing.TreeObject, hash)
	if err != nil {
		return nil, newError(ReasonPathNotFound, err, "%s is not a directory", displayPath(shown))
	}
	r.treeBytes += obj.Size()
	if r.treeBytes > int64(r.limits.MaxEntries)*maxTreeEntryBytes {
		return nil, r.tooManyEntries(shown)
	}
	t, err := object.DecodeTree(r.repo.Storer, obj)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", displayPath(shown), err)
	}
	r.trees[hash] = t
	return t, nil
}

// visit counts one tree entry against Limits.MaxEntries, and now and then
// looks whether the caller gave up.
func (r *reader) visit(name string) error {
	r.entries++
	if r.entries > r.limits.MaxEntries {
		return r.tooManyEntries(name)
	}
	if r.entries%ctxCheckEvery == 0 {
		if err := r.ctx.Err(); err != nil {
			return classify(err, "reading the files under "+r.scope)
		}
	}
	return nil
}

func (r *reader) tooManyEntries(name string) error {
	return newError(ReasonLimitExceeded, nil, "more than the limit of %d entries (files, directories and symlinks, counted each time they are reached) under %s (at %s)",
		r.limits.MaxEntries, r.scope, displayPath(name))
}

// walkDir reads every file under tree, the directory at the resolved path
// dir, naming them below shown (the path under spec.path).
func (r *reader) walkDir(tree *object.Tree, dir, shown string, depth, linkDepth int) error {
	if depth > r.limits.MaxDepth {
		return newError(ReasonLimitExceeded, nil, "%s is nested deeper than the limit of %d directories", displayPath(shown), r.limits.MaxDepth)
	}
	for _, e := range tree.Entries {
		name := path.Join(shown, e.Name)
		if err := r.visit(name); err != nil {
			return err
		}
		if err := r.walkEntry(e, path.Join(dir, e.Name), name, depth, linkDepth); err != nil {
			return err
		}
	}
	return nil
}

func (r *reader) walkEntry(e object.TreeEntry, physical, name string, depth, linkDepth int) error {
	switch e.Mode {
	case filemode.Dir:
		sub, err := r.tree(e.Hash, name)
		if err != nil {
			return err
		}
		return r.walkDir(sub, physical, name, depth+1, linkDepth)
	case filemode.Regular, filemode.Executable, filemode.Deprecated:
		return r.addFile(name, e.Hash)
	case filemode.Symlink:
		return r.walkLink(physical, name, depth, linkDepth)
	}
	// Submodules (gitlinks) carry no content of this repository.
	return nil
}

// walkLink reads what the symlink at physical points to, under its name.
func (r *reader) walkLink(physical, name string, depth, linkDepth int) error {
	target, entry, err := r.resolve(physical, name)
	if err != nil {
		return err
	}
	if entry != nil && entry.Mode != filemode.Dir {
		return r.addFile(name, entry.Hash)
	}
	// A link to a directory inside the repository: read it under the link's
	// name; the depth limit stops a link loop.
	if linkDepth >= maxSymlinkHops {
		return newError(ReasonUnsafeContent, nil, "%s: too many levels of symbolic links", name)
	}
	sub := r.root
	if entry != nil {
		if sub, err = r.tree(entry.Hash, name); err != nil {
			return err
		}
	}
	return r.walkDir(sub, target, name, depth+1, linkDepth+1)
}

func (r *reader) addFile(name string, hash plumbing.Hash) error {
	if len(r.files) >= r.limits.MaxFiles {
		return newError(ReasonLimitExceeded, nil, "more than the limit of %d files under %s (at %s)", r.limits.MaxFiles, r.scope, name)
	}
	blob, err := r.repo.BlobObject(hash)
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	if blob.Size > r.limits.MaxFileBytes {
		return newError(ReasonLimitExceeded, nil, "%s is %d bytes, over the limit of %d bytes for one file", name, blob.Size, r.limits.MaxFileBytes)
	}
	if r.total+blob.Size > r.limits.MaxTotalBytes {
		return newError(ReasonLimitExceeded, nil, "the files under %s exceed the limit of %d bytes in total (at %s)", r.scope, r.limits.MaxTotalBytes, name)
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

// checkObjectSize refuses an object of type typ larger than max before it is
// decoded, reading only its header; plumbing.ErrObjectNotFound means there
// is no object of that type.
func checkObjectSize(repo *gogit.Repository, typ plumbing.ObjectType, hash plumbing.Hash, max int64) error {
	obj, err := repo.Storer.EncodedObject(typ, hash)
	if err != nil {
		return err
	}
	if obj.Size() > max {
		return newError(ReasonLimitExceeded, nil, "%s %s is %s, over the limit of %s for one %s",
			typ, shortHash(hash), formatBytes(obj.Size()), formatBytes(max), typ)
	}
	return nil
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

func scopeOf(dir string) string {
	if strings.Trim(dir, "/.") == "" {
		return "the repository"
	}
	return fmt.Sprintf("path %q", dir)
}

func displayPath(p string) string {
	if p == "" {
		return "the path"
	}
	return p
}

func shortHash(h plumbing.Hash) string { return h.String()[:7] }
