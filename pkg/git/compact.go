package git

import (
	"errors"
	"fmt"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// maxPacks is how many packs a store gathers before it is compacted. Every
// shallow fetch adds a pack and a line to the shallow list, and go-git sends
// the whole list with the next fetch and searches every pack's index for an
// object: without compaction each push made every later fetch of the URL
// slower (measured: 25 ms at the first fetch, 130 ms at the 300th).
const maxPacks = 16

// compact rewrites a store that holds more than maxPacks packs into one pack
// with what its refs point at: each ref's commit (and annotated tag) and
// that commit's whole tree, never older commits. Every kept commit is then
// shallow (its parents are gone), so the shallow list is set to them. A
// commit no ref names any more is dropped; a reader still on it fetches
// again.
func compact(repo *gogit.Repository, storage *filesystem.Storage) error {
	packs, err := storage.ObjectPacks()
	if err != nil || len(packs) <= maxPacks {
		return err
	}
	keep, tips, err := refObjects(repo)
	if err != nil {
		return err
	}
	if err := writePack(storage, keep); err != nil {
		return err
	}
	if after, err := storage.ObjectPacks(); err != nil || len(after) <= len(packs) {
		return err // the new pack is one of the old ones: nothing to remove
	}
	for _, h := range packs {
		if err := storage.DeleteOldObjectPackAndIndex(h, time.Time{}); err != nil {
			return fmt.Errorf("removing an old pack: %w", err)
		}
	}
	return storage.SetShallow(tips)
}

// refObjects lists every object the refs need, and the commits they name.
func refObjects(repo *gogit.Repository) ([]plumbing.Hash, []plumbing.Hash, error) {
	seen := map[plumbing.Hash]bool{}
	var tips []plumbing.Hash
	refs, err := repo.References()
	if err != nil {
		return nil, nil, err
	}
	err = refs.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() != plumbing.HashReference {
			return nil
		}
		commit, err := peel(repo, ref.Hash(), seen)
		if err != nil {
			return fmt.Errorf("reading %s: %w", ref.Name(), err)
		}
		if !seen[commit.Hash] {
			seen[commit.Hash] = true
			tips = append(tips, commit.Hash)
		}
		tree, err := commit.Tree()
		if err != nil {
			return err
		}
		return addTree(tree, seen)
	})
	if err != nil {
		return nil, nil, err
	}
	keep := make([]plumbing.Hash, 0, len(seen))
	for h := range seen {
		keep = append(keep, h)
	}
	return keep, tips, nil
}

// peel returns the commit a ref's hash names, keeping annotated tags on the
// way.
func peel(repo *gogit.Repository, hash plumbing.Hash, seen map[plumbing.Hash]bool) (*object.Commit, error) {
	for range 8 {
		tag, err := repo.TagObject(hash)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			return repo.CommitObject(hash)
		}
		if err != nil {
			return nil, err
		}
		seen[hash] = true
		hash = tag.Target
	}
	return nil, fmt.Errorf("tag %s nests too deep", hash)
}

func addTree(tree *object.Tree, seen map[plumbing.Hash]bool) error {
	if seen[tree.Hash] {
		return nil
	}
	seen[tree.Hash] = true
	for _, e := range tree.Entries {
		if e.Mode.IsFile() {
			seen[e.Hash] = true
			continue
		}
		if e.Mode == 0o160000 { // a submodule's commit lives elsewhere
			continue
		}
		sub, err := tree.Tree(e.Name)
		if err != nil {
			return err
		}
		if err := addTree(sub, seen); err != nil {
			return err
		}
	}
	return nil
}

func writePack(storage *filesystem.Storage, objects []plumbing.Hash) (err error) {
	w, err := storage.PackfileWriter()
	if err != nil {
		return err
	}
	defer func() {
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}()
	// No delta search (window 0): compaction costs time linear in the
	// objects kept, whatever a hostile repository's blobs look like.
	_, err = packfile.NewEncoder(w, storage, false).Encode(objects, 0)
	return err
}
