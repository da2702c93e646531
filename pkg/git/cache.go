package git

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"
	"golang.org/x/sync/singleflight"
	"k8s.io/klog/v2"
)

// Options configure a Cache.
type Options struct {
	// Dir holds one bare object store per repository URL and credentials.
	Dir string
	// MaxBytes bounds the disk the stores use; the least recently used idle
	// stores are removed past it. Losing one costs a re-fetch, nothing more.
	MaxBytes int64
	// ListingTTL is how long one ref listing answers every repository on the
	// same URL, so repositories polling together list the remote once.
	ListingTTL time.Duration
	// MaxConcurrentFetches bounds fetches across all repositories.
	MaxConcurrentFetches int
	// FetchRetries is how often a fetch cut off by the network is retried,
	// with exponential backoff, before the error is returned.
	FetchRetries int
	// Limits bound what is read from a commit.
	Limits Limits
}

// Defaults of Options.
const (
	DefaultMaxBytes             = 2 << 30
	DefaultListingTTL           = 2 * time.Second
	DefaultMaxConcurrentFetches = 4
	DefaultFetchRetries         = 3
)

// Source names a repository, the ref wanted from it and how to authenticate.
type Source struct {
	URL    string
	Branch string
	Tag    string
	Commit string
	Auth   *Auth
}

func (s Source) key() string {
	sum := sha256.Sum256([]byte(normalizeURL(s.URL) + "\x00" + s.Auth.fingerprint()))
	return hex.EncodeToString(sum[:10])
}

func (s Source) ref() plumbing.ReferenceName {
	if s.Tag != "" {
		return plumbing.NewTagReferenceName(s.Tag)
	}
	return plumbing.NewBranchReferenceName(s.Branch)
}

func (s Source) describe() string {
	switch {
	case s.Commit != "":
		return fmt.Sprintf("commit %s of %s", s.Commit, redact(s.URL))
	case s.Tag != "":
		return fmt.Sprintf("tag %q of %s", s.Tag, redact(s.URL))
	}
	return fmt.Sprintf("branch %q of %s", s.Branch, redact(s.URL))
}

// Cache fetches repositories into shared on-disk object stores.
type Cache struct {
	opts       Options
	flight     singleflight.Group
	fetchSlots chan struct{}
	// objects is one object cache for all stores: objects are named by their
	// hash, so sharing is safe, and memory stays bounded however many
	// repositories there are.
	objects cache.Object

	mu       sync.Mutex
	stores   map[string]*store
	listings map[string]listing
}

type listing struct {
	refs map[plumbing.ReferenceName]plumbing.Hash
	at   time.Time
}

// store is the bare object store of one URL and credentials. Its repository
// stays open between operations, so pack indexes are read once per fetch
// rather than once per read; mu serialises every use of it.
type store struct {
	dir      string
	mu       sync.Mutex
	repo     *gogit.Repository
	storage  *filesystem.Storage
	lastUsed time.Time
	size     int64
	users    int
}

// NewCache opens the cache under opts.Dir, keeping the stores a previous run left.
func NewCache(opts Options) (*Cache, error) {
	if opts.Dir == "" {
		return nil, errors.New("the git cache needs a directory")
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.ListingTTL == 0 {
		opts.ListingTTL = DefaultListingTTL
	}
	if opts.MaxConcurrentFetches == 0 {
		opts.MaxConcurrentFetches = DefaultMaxConcurrentFetches
	}
	if opts.FetchRetries == 0 {
		opts.FetchRetries = DefaultFetchRetries
	}
	opts.Limits = opts.Limits.withDefaults()
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the git cache directory %s: %w", opts.Dir, err)
	}
	c := &Cache{
		opts:       opts,
		objects:    cache.NewObjectLRU(32 * cache.MiByte),
		fetchSlots: make(chan struct{}, opts.MaxConcurrentFetches),
		stores:     map[string]*store{},
		listings:   map[string]listing{},
	}
	entries, err := os.ReadDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		info, _ := e.Info()
		dir := filepath.Join(opts.Dir, e.Name())
		c.stores[e.Name()] = &store{dir: dir, lastUsed: info.ModTime(), size: dirSize(dir)}
	}
	return c, nil
}

// Latest returns the commit the source's ref points at now. It costs one ref
// listing, shared by every source on the same URL within ListingTTL, and no
// fetch. A pinned commit is returned without asking the remote at all.
func (c *Cache) Latest(ctx context.Context, src Source) (string, error) {
	if src.Commit != "" {
		return src.Commit, nil
	}
	refs, err := c.listRefs(ctx, src)
	if err != nil {
		return "", err
	}
	name := src.ref()
	if src.Tag != "" {
		// An annotated tag points at a tag object; the commit is its peeled value.
		if hash, ok := refs[plumbing.ReferenceName(string(name)+"^{}")]; ok {
			return hash.String(), nil
		}
	}
	if hash, ok := refs[name]; ok {
		return hash.String(), nil
	}
	kind := "branch"
	if src.Tag != "" {
		kind = "tag"
	}
	return "", newError(ReasonRefNotFound, nil, "%s %q not found in %s", kind, name.Short(), redact(src.URL))
}

// Forget drops the cached ref listing of src's URL, so the next Latest asks
// the remote: for an explicit sync request, which must see a push made a
// moment ago.
func (c *Cache) Forget(src Source) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.listings, src.key())
}

func (c *Cache) listRefs(ctx context.Context, src Source) (map[plumbing.ReferenceName]plumbing.Hash, error) {
	key := src.key()
	c.mu.Lock()
	cached, ok := c.listings[key]
	c.mu.Unlock()
	if ok && time.Since(cached.at) < c.opts.ListingTTL {
		return cached.refs, nil
	}
	// Callers on one URL share the listing, and with it the first caller's
	// context: its timeout bounds everyone's wait.
	v, err, _ := c.flight.Do("list/"+key, func() (any, error) {
		auth, err := src.Auth.method(src.URL)
		if err != nil {
			return nil, classify(err, "preparing credentials for "+redact(src.URL))
		}
		remote := gogit.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{src.URL}})
		list, err := remote.ListContext(ctx, &gogit.ListOptions{Auth: auth, CABundle: caBundle(src.Auth), PeelingOption: gogit.AppendPeeled})
		if err != nil {
			return nil, classify(err, "listing refs of "+redact(src.URL))
		}
		refs := make(map[plumbing.ReferenceName]plumbing.Hash, len(list))
		for _, ref := range list {
			if ref.Type() == plumbing.HashReference {
				refs[ref.Name()] = ref.Hash()
			}
		}
		c.mu.Lock()
		c.listings[key] = listing{refs: refs, at: time.Now()}
		c.mu.Unlock()
		return refs, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(map[plumbing.ReferenceName]plumbing.Hash), nil
}

// Files returns the files under path of commit (as Latest returned it),
// fetching the commit first unless the store has it. Any number of callers on
// one URL and commit share one fetch. The Tree may be shared with other
// callers and must not be modified. If a branch moved on between Latest and
// the fetch, the tree is the newer commit's and Tree.Commit says so.
func (c *Cache) Files(ctx context.Context, src Source, commit, path string) (*Tree, error) {
	st := c.acquire(src.key())
	defer c.release(st)

	hash := plumbing.NewHash(commit)
	if !c.has(st, hash) {
		v, err, _ := c.flight.Do("fetch/"+src.key()+"/"+commit, func() (any, error) {
			return c.fetch(ctx, src, st, hash)
		})
		if err != nil {
			return nil, err
		}
		hash = v.(plumbing.Hash)
		c.evict()
	}
	// Sources asking for the same path of the same commit at once share one
	// read; the Tree is read-only for every caller.
	v, err, _ := c.flight.Do("read/"+src.key()+"/"+hash.String()+"/"+path, func() (any, error) {
		st.mu.Lock()
		defer st.mu.Unlock()
		repo, err := c.open(st)
		if err != nil {
			return nil, fmt.Errorf("opening the git cache for %s: %w", redact(src.URL), err)
		}
		return readTree(repo, hash, path, c.opts.Limits)
	})
	if err != nil {
		return nil, err
	}
	return v.(*Tree), nil
}

// fetch brings the wanted commit into the store, shallow and for one ref,
// retrying a transfer the network cut off. It returns the commit fetched.
func (c *Cache) fetch(ctx context.Context, src Source, st *store, want plumbing.Hash) (plumbing.Hash, error) {
	select {
	case c.fetchSlots <- struct{}{}:
		defer func() { <-c.fetchSlots }()
	case <-ctx.Done():
		return plumbing.ZeroHash, classify(ctx.Err(), "waiting to fetch "+src.describe())
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if c.hasLocked(st, want) {
		return want, nil
	}
	// The fetch writes through a storage of its own; the next read reopens
	// and sees the new pack.
	st.close()
	var got plumbing.Hash
	var err error
	backoff := 250 * time.Millisecond
	for attempt := 0; ; attempt++ {
		got, err = c.fetchOnce(ctx, src, st, want)
		if err == nil || !transient(err) || attempt >= c.opts.FetchRetries {
			break
		}
		klog.V(2).InfoS("Retrying a fetch", "source", src.describe(), "attempt", attempt+1, "error", err.Error())
		select {
		case <-time.After(backoff):
			backoff *= 2
		case <-ctx.Done():
			return plumbing.ZeroHash, classify(ctx.Err(), "fetching "+src.describe())
		}
	}
	// size is read under c.mu (evict, Size), so it is written under it too.
	size := dirSize(st.dir)
	c.mu.Lock()
	st.size = size
	c.mu.Unlock()
	return got, err
}

func (c *Cache) fetchOnce(ctx context.Context, src Source, st *store, want plumbing.Hash) (plumbing.Hash, error) {
	doing := "fetching " + src.describe()
	auth, err := src.Auth.method(src.URL)
	if err != nil {
		return plumbing.ZeroHash, classify(err, doing)
	}
	repo, storage, err := openStore(st.dir, c.objects)
	if err != nil {
		// A store a crash or a cut transfer left unreadable is only a cache.
		klog.InfoS("Recreating an unreadable git cache store", "dir", st.dir, "error", err.Error())
		_ = os.RemoveAll(st.dir)
		if repo, storage, err = openStore(st.dir, c.objects); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("creating the git cache store %s: %w", st.dir, err)
		}
	}
	defer storage.Close()

	opts := &gogit.FetchOptions{
		RemoteName: "origin",
		RemoteURL:  src.URL,
		Depth:      1,
		Auth:       auth,
		CABundle:   caBundle(src.Auth),
		Tags:       gogit.NoTags,
		Force:      true,
	}
	local := src.ref()
	if src.Commit != "" {
		local = plumbing.ReferenceName("refs/alumiini/pins/" + src.Commit)
		opts.RefSpecs = []config.RefSpec{config.RefSpec(src.Commit + ":" + string(local))}
	} else {
		opts.RefSpecs = []config.RefSpec{config.RefSpec("+" + string(src.ref()) + ":" + string(local))}
	}
	err = repo.FetchContext(ctx, opts)
	if err != nil && !errors.Is(err, gogit.NoErrAlreadyUpToDate) {
		if src.Commit == "" {
			return plumbing.ZeroHash, classify(err, doing)
		}
		// Not every server serves a commit by hash; then take its history.
		opts.Depth = 0
		opts.RefSpecs = []config.RefSpec{"+refs/heads/*:refs/alumiini/heads/*"}
		if err := repo.FetchContext(ctx, opts); err != nil && !errors.Is(err, gogit.NoErrAlreadyUpToDate) {
			return plumbing.ZeroHash, classify(err, doing)
		}
		if _, err := repo.CommitObject(want); err != nil {
			return plumbing.ZeroHash, newError(ReasonRefNotFound, err, "commit %s not found in %s", src.Commit, redact(src.URL))
		}
		return want, nil
	}
	if _, err := repo.CommitObject(want); err == nil {
		return want, nil
	}
	ref, err := repo.Reference(local, true)
	if err != nil {
		return plumbing.ZeroHash, classify(err, doing)
	}
	if src.Tag != "" {
		if tag, err := repo.TagObject(ref.Hash()); err == nil {
			commit, err := tag.Commit()
			if err != nil {
				return plumbing.ZeroHash, classify(err, doing)
			}
			return commit.Hash, nil
		}
	}
	return ref.Hash(), nil
}

func (c *Cache) acquire(key string) *store {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.stores[key]
	if st == nil {
		st = &store{dir: filepath.Join(c.opts.Dir, key)}
		c.stores[key] = st
	}
	st.users++
	st.lastUsed = time.Now()
	return st
}

func (c *Cache) release(st *store) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st.users--
}

// evict removes the least recently used idle stores while the cache is over
// its size bound.
func (c *Cache) evict() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var total int64
	for _, st := range c.stores {
		total += st.size
	}
	for total > c.opts.MaxBytes {
		var oldestKey string
		var oldest *store
		for key, st := range c.stores {
			if st.users == 0 && (oldest == nil || st.lastUsed.Before(oldest.lastUsed)) {
				oldestKey, oldest = key, st
			}
		}
		if oldest == nil {
			return
		}
		klog.V(2).InfoS("Evicting a git cache store", "dir", oldest.dir, "bytes", oldest.size)
		oldest.mu.Lock()
		oldest.close()
		_ = os.RemoveAll(oldest.dir)
		oldest.mu.Unlock()
		total -= oldest.size
		delete(c.stores, oldestKey)
	}
}

// Size is the disk the stores use, in bytes.
func (c *Cache) Size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var total int64
	for _, st := range c.stores {
		total += st.size
	}
	return total
}

func (c *Cache) has(st *store, hash plumbing.Hash) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return c.hasLocked(st, hash)
}

func (c *Cache) hasLocked(st *store, hash plumbing.Hash) bool {
	if _, err := os.Stat(filepath.Join(st.dir, "HEAD")); err != nil {
		return false
	}
	repo, err := c.open(st)
	if err != nil {
		return false
	}
	_, err = repo.CommitObject(hash)
	return err == nil
}

// open returns the store's repository, opening it if needed; st.mu is held.
func (c *Cache) open(st *store) (*gogit.Repository, error) {
	if st.repo == nil {
		repo, storage, err := openStore(st.dir, c.objects)
		if err != nil {
			return nil, err
		}
		st.repo, st.storage = repo, storage
	}
	return st.repo, nil
}

// close releases the open repository; st.mu is held.
func (st *store) close() {
	if st.storage != nil {
		st.storage.Close()
	}
	st.repo, st.storage = nil, nil
}

// openStore opens (or creates) the bare repository in dir over the shared
// object cache.
func openStore(dir string, objects cache.Object) (*gogit.Repository, *filesystem.Storage, error) {
	storage := filesystem.NewStorageWithOptions(osfs.New(dir), objects, filesystem.Options{})
	repo, err := gogit.Open(storage, nil)
	if errors.Is(err, gogit.ErrRepositoryNotExists) {
		repo, err = gogit.Init(storage, nil)
		if err == nil {
			_, err = repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{"unused"}})
		}
	}
	if err != nil {
		storage.Close()
		return nil, nil, err
	}
	return repo, storage, nil
}

func caBundle(a *Auth) []byte {
	if a == nil {
		return nil
	}
	return a.CABundle
}

func dirSize(dir string) int64 {
	var size int64
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				size += info.Size()
			}
		}
		return nil
	})
	return size
}
