package git

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/validation"
	"github.com/falsesystems/alumiini/pkg/slots"
)

// Options configure a Cache. Zero values take the defaults below.
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
	// MaxConcurrentFetchesPerTenant bounds the fetches of one Source.Tenant
	// at once, so one tenant's slow servers cannot hold every fetch slot.
	// The default is a quarter of MaxConcurrentFetches, at least 1.
	MaxConcurrentFetchesPerTenant int
	// MaxConcurrentListings bounds ref listings across all repositories.
	// Each reads up to 16 MiB of a server's ref advertisement; lists over
	// 1 MiB are read two at a time regardless of this setting (see
	// waitForTurnIfLarge).
	MaxConcurrentListings int
	// MaxConcurrentListingsPerTenant bounds the listings of one
	// Source.Tenant at once, so one tenant's slow or huge listings leave
	// slots to the others. The default is half of MaxConcurrentListings (at
	// least 1), not a quarter as for fetches: a listing is one short round
	// trip, and an install with every GitRepository in one namespace polls
	// all its URLs through that namespace's share.
	MaxConcurrentListingsPerTenant int
	// FetchRetries is how often a fetch cut off by the network is retried,
	// with exponential backoff, before the error is returned.
	FetchRetries int
	// MaxFetchBytes bounds the bytes one fetch (or listing) may receive,
	// over any transport: past it the fetch stops with ReasonLimitExceeded.
	// The limits on reading files apply only after a fetch, so without this
	// a server could fill the disk.
	MaxFetchBytes int64
	// LowSpeedBytes and LowSpeedTime stop a listing or fetch that receives
	// fewer than LowSpeedBytes in LowSpeedTime (git's http.lowSpeedLimit and
	// http.lowSpeedTime), with ReasonTimeout, so that a stalled server does
	// not hold a fetch slot for all of spec.timeout. A negative LowSpeedTime
	// turns the check off.
	LowSpeedBytes int64
	LowSpeedTime  time.Duration
	// MinFreeBytes is the free space the cache's filesystem must have for a
	// fetch to start: the cache may share a volume with etcd, which must not
	// run out. A fetch may still use up to MaxFetchBytes of it. A negative
	// value turns the check off.
	MinFreeBytes int64
	// Limits bound what is read from a commit.
	Limits Limits
}

// Defaults of Options.
const (
	DefaultMaxBytes             = 2 << 30
	DefaultListingTTL           = 2 * time.Second
	DefaultMaxConcurrentFetches = 4
	// DefaultMaxConcurrentListings: a listing is one round trip of refs,
	// far lighter than a fetch; a large list waits for one of the
	// maxLargeRefLists turns, so this bounds its memory no more.
	DefaultMaxConcurrentListings = 8
	DefaultFetchRetries          = 3
	DefaultMaxFetchBytes         = 256 << 20
	DefaultLowSpeedBytes         = 1 << 10
	DefaultLowSpeedTime          = 30 * time.Second
	DefaultMinFreeBytes          = 512 << 20
)

func (o Options) withDefaults() Options {
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.ListingTTL == 0 {
		o.ListingTTL = DefaultListingTTL
	}
	if o.MaxConcurrentFetches == 0 {
		o.MaxConcurrentFetches = DefaultMaxConcurrentFetches
	}
	if o.MaxConcurrentListings == 0 {
		o.MaxConcurrentListings = DefaultMaxConcurrentListings
	}
	if o.MaxConcurrentListingsPerTenant == 0 {
		o.MaxConcurrentListingsPerTenant = max(1, o.MaxConcurrentListings/2)
	}
	o.MaxConcurrentListingsPerTenant = min(o.MaxConcurrentListingsPerTenant, o.MaxConcurrentListings)
	if o.MaxConcurrentFetchesPerTenant == 0 {
		o.MaxConcurrentFetchesPerTenant = max(1, o.MaxConcurrentFetches/4)
	}
	o.MaxConcurrentFetchesPerTenant = min(o.MaxConcurrentFetchesPerTenant, o.MaxConcurrentFetches)
	if o.FetchRetries == 0 {
		o.FetchRetries = DefaultFetchRetries
	}
	if o.MaxFetchBytes == 0 {
		o.MaxFetchBytes = DefaultMaxFetchBytes
	}
	if o.LowSpeedBytes == 0 {
		o.LowSpeedBytes = DefaultLowSpeedBytes
	}
	if o.LowSpeedTime == 0 {
		o.LowSpeedTime = DefaultLowSpeedTime
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = DefaultMinFreeBytes
	}
	o.Limits = o.Limits.withDefaults()
	return o
}

// Source names a repository, the ref wanted from it and how to authenticate.
type Source struct {
	URL    string
	Branch string
	Tag    string
	Commit string
	Auth   *Auth
	// Tenant is whose listing or fetch this is (the GitRepository's
	// namespace): listing and fetch slots are shared fairly between tenants,
	// and a tenant holds at most one turn to read a large ref list. Sources
	// without one share the slots of the tenant "".
	Tenant string
	// Since, if set, is a moment Latest must see every push made before:
	// a push's arrival, or when a sync request was taken up. Zero for a
	// poll, which takes any answer within ListingTTL.
	Since time.Time
}

func (s Source) key() string {
	sum := sha256.Sum256([]byte(NormalizeURL(s.URL) + "\x00" + s.Auth.fingerprint()))
	return hex.EncodeToString(sum[:10])
}

func (s Source) ref() plumbing.ReferenceName {
	if s.Tag != "" {
		return plumbing.NewTagReferenceName(s.Tag)
	}
	return plumbing.NewBranchReferenceName(s.Branch)
}

// refSpec fetches the ref into the same name locally, or a pinned commit
// into a ref of its own, so the store keeps it.
func (s Source) refSpec() config.RefSpec {
	if s.Commit != "" {
		return config.RefSpec(s.Commit + ":refs/alumiini/pins/" + s.Commit)
	}
	return config.RefSpec("+" + string(s.ref()) + ":" + string(s.ref()))
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
	opts  Options
	work  sharedWork
	slots *slots.Slots
	// listingSlots bound ref listings, fairly between tenants.
	listingSlots *slots.Slots
	// largeRefLists are the turns to read a ref list past
	// smallRefListBytes, in a listing or a fetch.
	largeRefLists *slots.Slots
	// objects is one object cache for all stores: objects are named by their
	// hash, so sharing is safe, and memory stays bounded however many
	// repositories there are.
	objects cache.Object

	mu       sync.Mutex
	stores   map[string]*store
	listings map[string]listing
	// keptBytes counts the heap the listings kept take, at most
	// keptBytesLimit (maxKeptListingBytes; a field for tests).
	keptBytes, keptBytesLimit int
	swept                     time.Time // when listings past ListingTTL were last dropped
	// refreshes holds, per URL key, when its latest push came or sync
	// request was taken up (refresh): a listing that started before that
	// is not kept.
	refreshes map[string]time.Time
	// refreshesSwept is when refreshes past refreshLife were last dropped.
	refreshesSwept time.Time
	// testHookAfterLook, for tests, runs in Files after it looked for the
	// commit in the store and before it fetches or reads.
	testHookAfterLook func(*store)
}

// refreshLife is how long a refresh is remembered: longer than a listing
// runs (each caller waits at most its sync's timeout, validation.MaxTimeout,
// and the low-speed check stops a stalled server), so a listing that started
// before a forgotten refresh is not still running to be kept. A server
// trickling its list to a stream of joining callers could outlast it, and
// then only its own URL's listing is kept older than a push. Forgetting
// keeps the map to the URLs pushed to lately, not every URL ever pushed to.
const refreshLife = 2 * validation.MaxTimeout

// maxKeptListingBytes bounds the heap of all listings kept for ListingTTL:
// as many listings as end within it are kept, and each may hold up to 16 MiB
// of a server's branch and tag names. A listing past it is answered and not
// kept, so the next Latest of its URL lists again.
const maxKeptListingBytes = 32 << 20

// refHeapBytes is about what a kept ref costs beside its name's bytes: its
// share of the map (which rounds its groups up to a power of two) and the
// name's string header and allocation (measured: 110-124 bytes a ref with
// names of about 17 bytes, over lists of 1 to 14 MiB).
const refHeapBytes = 112

type listing struct {
	refs  map[plumbing.ReferenceName]plumbing.Hash
	bytes int // about what refs take of the heap
	// at is when the listing started: it shows no push made after that.
	at time.Time
}

// store is the bare object store of one URL and credentials. Its repository
// stays open between operations, so pack indexes are read once per fetch
// rather than once per read; its lock serialises every use of it.
type store struct {
	dir string
	// locked holds a token while the store is in use. A channel, not a
	// mutex, so that waiting honours a context: a fetch holds the lock while
	// it waits for a turn (see waitForTurnIfLarge) and while its pack comes,
	// and other tenants' reads of the same URL must still time out on
	// their own deadlines.
	locked   chan struct{}
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
	opts = opts.withDefaults()
	installTransports()
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the git cache directory %s: %w", opts.Dir, err)
	}
	c := &Cache{
		opts:         opts,
		objects:      cache.NewObjectLRU(32 * cache.MiByte),
		slots:        slots.New(opts.MaxConcurrentFetches, opts.MaxConcurrentFetchesPerTenant),
		listingSlots: slots.New(opts.MaxConcurrentListings, opts.MaxConcurrentListingsPerTenant),
		// At most one turn per namespace.
		largeRefLists:  slots.New(maxLargeRefLists, 1),
		stores:         map[string]*store{},
		listings:       map[string]listing{},
		keptBytesLimit: maxKeptListingBytes,
		refreshes:      map[string]time.Time{},
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
		st := newStore(dir)
		st.lastUsed, st.size = info.ModTime(), dirSize(dir)
		c.stores[e.Name()] = st
	}
	return c, nil
}

// Latest returns the commit the source's ref points at now. It costs one ref
// listing, whose answer serves every source on the same URL and credentials
// within ListingTTL, and no fetch; with src.Since, a listing that started
// later (refresh). A pinned commit is returned without asking the remote
// at all.
func (c *Cache) Latest(ctx context.Context, src Source) (string, error) {
	if err := reachable(src.URL); err != nil {
		return "", err
	}
	if src.Commit != "" {
		return src.Commit, nil
	}
	if !src.Since.IsZero() {
		c.refresh(src, src.Since)
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

// refresh makes every Latest of src's URL and credentials see every push
// made until since (Latest does it for a source with Since): a cached
// listing that started earlier is dropped, and one running that started
// earlier will not be kept when it ends. It is remembered for refreshLife.
func (c *Cache) refresh(src Source, since time.Time) {
	key := src.key()
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.listings[key]; ok && l.at.Before(since) {
		c.dropListing(key)
	}
	if c.refreshes[key].Before(since) {
		c.refreshes[key] = since
	}
	if now := time.Now(); now.Sub(c.refreshesSwept) >= time.Minute {
		for k, at := range c.refreshes {
			if k != key && now.Sub(at) > refreshLife {
				delete(c.refreshes, k)
			}
		}
		c.refreshesSwept = now
	}
}

// listRefs answers from the cached listing or a shared one; for a source
// with Since, from one that started after it. A listing running when a push
// or request came is joined, and once it ends everyone who needs the push
// lists once more, together. (Moving them on at once to a listing of their
// own made each overlapping sync request list the URL; and a listing that
// ended just as a refresh came could still be joined, so its answer is what
// is checked.) Only the caller's own Since counts: another tenant's
// requests on the URL do not make a poll list twice.
func (c *Cache) listRefs(ctx context.Context, src Source) (map[plumbing.ReferenceName]plumbing.Hash, error) {
	key := src.key()
	c.mu.Lock()
	cached, ok := c.listings[key]
	c.mu.Unlock()
	// A cached listing is never older than the latest refresh (which
	// dropped it, and keepListing refuses one).
	if ok && time.Since(cached.at) < c.opts.ListingTTL {
		return cached.refs, nil
	}
	l, err := c.sharedListing(ctx, src, key)
	if err != nil || !l.at.Before(src.Since) {
		return l.refs, err
	}
	// The listing joined started before src.Since. It has ended and left
	// the shared calls, so the one joined now starts later.
	l, err = c.sharedListing(ctx, src, key)
	return l.refs, err
}

// sharedListing lists key's refs, or joins the tenant's listing of it
// already running.
func (c *Cache) sharedListing(ctx context.Context, src Source, key string) (listing, error) {
	// One tenant's callers on one URL share the listing; each waits for it
	// only as long as its own context allows. Tenants list apart, each in
	// its own listing slot, so nobody waits on another tenant's slots; the
	// listing's answer then serves every tenant until ListingTTL.
	shareKey := "list/" + key + "/" + src.Tenant
	v, err := c.shared(ctx, shareKey, "listing refs of "+redact(src.URL), func(ctx context.Context) (any, error) {
		const slot = "a listing slot (--max-concurrent-listings, --max-concurrent-listings-per-namespace)"
		release, err := waitForSlot(ctx, c.listingSlots, src.Tenant, listingSlotWait, slot)
		if err != nil {
			return nil, classify(err, "waiting for "+slot+" to list refs of "+redact(src.URL))
		}
		defer release()
		started := time.Now()
		auth, err := src.Auth.method(src.URL)
		if err != nil {
			return nil, classify(err, "preparing credentials for "+redact(src.URL))
		}
		t := c.startTransfer(ctx, "listing refs of "+redact(src.URL), src)
		defer t.end()
		remote := gogit.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{src.URL}})
		list, err := remote.ListContext(t.ctx, &gogit.ListOptions{Auth: auth, ProxyOptions: t.sshProxy(src.URL), PeelingOption: gogit.AppendPeeled})
		if err != nil {
			return nil, t.result(err)
		}
		// Only branches and tags are ever asked for: a forge's pull request
		// refs, often most of a list, are not kept.
		wanted := func(ref *plumbing.Reference) bool {
			return ref.Type() == plumbing.HashReference && (ref.Name().IsBranch() || ref.Name().IsTag())
		}
		n := 0
		for _, ref := range list {
			if wanted(ref) {
				n++
			}
		}
		// Sized once, not grown by doubling; refHeapBytes is what a ref
		// took in such a map.
		kept := listing{refs: make(map[plumbing.ReferenceName]plumbing.Hash, n), at: started}
		for _, ref := range list {
			if wanted(ref) {
				kept.refs[ref.Name()] = ref.Hash()
				// A long name's allocation takes up to a quarter more.
				kept.bytes += len(ref.Name())*5/4 + refHeapBytes
			}
		}
		c.keepListing(key, kept)
		return kept, nil
	})
	if err != nil {
		return listing{}, err
	}
	return v.(listing), nil
}

// keepListing caches l as key's listing unless it is past ListingTTL
// already, it started before the key's latest refresh, a listing started
// later is cached already (tenants list apart, so listings of one key may
// end out of order), or keeping it would take the listings kept past
// keptBytesLimit.
// At most once a ListingTTL, or when l would not fit, it drops the listings
// past ListingTTL: nothing reads them.
func (c *Cache) keepListing(key string, l listing) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.swept) >= c.opts.ListingTTL || c.keptBytes+l.bytes > c.keptBytesLimit {
		for k, old := range c.listings {
			if now.Sub(old.at) >= c.opts.ListingTTL {
				c.dropListing(k)
			}
		}
		c.swept = now
	}
	if now.Sub(l.at) >= c.opts.ListingTTL || l.at.Before(c.refreshes[key]) {
		return
	}
	if cached, ok := c.listings[key]; ok && cached.at.After(l.at) {
		return
	}
	c.dropListing(key)
	if c.keptBytes+l.bytes > c.keptBytesLimit {
		return
	}
	c.listings[key] = l
	c.keptBytes += l.bytes
}

// dropListing drops key's cached listing, if any; c.mu must be held.
func (c *Cache) dropListing(key string) {
	if l, ok := c.listings[key]; ok {
		c.keptBytes -= l.bytes
		delete(c.listings, key)
	}
}

// Files returns the files under path of commit (as Latest returned it),
// fetching the commit first unless the store has it. A tenant's callers on
// one URL and commit share one fetch. If another fetch started the store
// afresh between the look and the read, it looks, fetches and reads once
// more. The Tree may be shared with other callers and must not be modified.
// If a branch moved on between Latest and the fetch, the tree is the newer
// commit's and Tree.Commit says so.
func (c *Cache) Files(ctx context.Context, src Source, commit, path string) (*Tree, error) {
	if err := reachable(src.URL); err != nil {
		return nil, err
	}
	tree, err := c.files(ctx, src, commit, path)
	if errors.Is(err, errCommitLeftStore) {
		// Another fetch of the URL started the store afresh between this
		// call's look and its read; the next look fetches the commit again.
		// (A third fetch queued for the store may do it again before the
		// read: then the sync fails, naming it, and the next one fetches.)
		tree, err = c.files(ctx, src, commit, path)
	}
	return tree, err
}

// errCommitLeftStore: the store no longer holds a commit it held a moment
// before; another fetch started it afresh (maxPacks, maxShallows).
var errCommitLeftStore = errors.New("the commit left the git cache before it was read (another fetch of the URL started the cache afresh); the next sync fetches it again")

func (c *Cache) files(ctx context.Context, src Source, commit, path string) (*Tree, error) {
	key := src.key()
	// Held for the whole call, so eviction never takes the store between
	// the fetch and the read.
	held := c.acquire(key)
	defer c.release(held)
	hash := plumbing.NewHash(commit)
	stored, err := c.has(ctx, held, src, hash)
	if err != nil {
		return nil, err
	}
	if c.testHookAfterLook != nil {
		c.testHookAfterLook(held)
	}
	if !stored {
		// One fetch per tenant: joining another tenant's would wait on that
		// tenant's fetch slots. The second finds the commit stored.
		v, err := c.shared(ctx, "fetch/"+key+"/"+commit+"/"+src.Tenant, "fetching "+src.describe(), func(work context.Context) (any, error) {
			st := c.acquire(key)
			defer c.release(st)
			return c.fetch(work, src, st, hash)
		})
		if err != nil {
			return nil, err
		}
		hash = v.(plumbing.Hash)
		c.evict()
	}
	// Sources asking for the same path of the same commit at once share one
	// read; the Tree is read-only for every caller.
	v, err := c.shared(ctx, "read/"+key+"/"+hash.String()+"/"+path, "reading "+src.describe(), func(work context.Context) (any, error) {
		st := c.acquire(key)
		defer c.release(st)
		if err := st.lock(work, src); err != nil {
			return nil, err
		}
		defer st.unlock()
		repo, err := c.open(st)
		if err != nil {
			return nil, fmt.Errorf("opening the git cache for %s: %w", redact(src.URL), err)
		}
		if !hasCommit(repo, hash) {
			return nil, fmt.Errorf("reading %s: %w", src.describe(), errCommitLeftStore)
		}
		return readTree(work, repo, hash, path, c.opts.Limits)
	})
	if err != nil {
		return nil, err
	}
	return v.(*Tree), nil
}

// shared runs work once for all callers of key at the same time; each
// waits only as long as its own context allows (see sharedWork).
func (c *Cache) shared(ctx context.Context, key, doing string, work func(context.Context) (any, error)) (any, error) {
	v, err := c.work.do(ctx, key, work)
	var g *callerGaveUpError
	if errors.As(err, &g) {
		if g.waitingFor != "" && errors.Is(g.err, context.DeadlineExceeded) {
			return nil, newError(ReasonTimeout, g.err, "%s: timed out (spec.timeout) waiting for %s", doing, g.waitingFor)
		}
		return nil, classify(g.err, doing)
	}
	return v, err
}

// fetch brings the wanted commit into the store, shallow and for one ref,
// retrying a transfer the network cut off. It returns the commit fetched.
func (c *Cache) fetch(ctx context.Context, src Source, st *store, want plumbing.Hash) (plumbing.Hash, error) {
	const slot = "a fetch slot (--max-concurrent-fetches, --max-concurrent-fetches-per-namespace)"
	release, err := waitForSlot(ctx, c.slots, src.Tenant, fetchSlotWait, slot)
	if err != nil {
		return plumbing.ZeroHash, classify(err, "waiting for "+slot+" to fetch "+src.describe())
	}
	defer release()
	if err := c.checkFreeSpace(src); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := st.lock(ctx, src); err != nil {
		return plumbing.ZeroHash, err
	}
	defer st.unlock()
	if c.hasLocked(st, want) {
		return want, nil
	}
	// The fetch writes through a storage of its own; the next read reopens
	// and sees the new pack.
	st.close()
	got, err := c.fetchRetrying(ctx, src, st, want)
	if err != nil {
		removeTempPacks(st.dir)
	}
	// size is read under c.mu (evict, Size), so it is written under it too.
	size := dirSize(st.dir)
	c.mu.Lock()
	st.size = size
	c.mu.Unlock()
	return got, err
}

func (c *Cache) fetchRetrying(ctx context.Context, src Source, st *store, want plumbing.Hash) (plumbing.Hash, error) {
	backoff := 250 * time.Millisecond
	for attempt := 0; ; attempt++ {
		got, err := c.fetchOnce(ctx, src, st, want)
		if err == nil || !transient(err) || attempt >= c.opts.FetchRetries {
			return got, err
		}
		klog.FromContext(ctx).V(2).Info("Retrying a fetch", "source", src.describe(), "attempt", attempt+1, "error", err.Error())
		removeTempPacks(st.dir)
		select {
		case <-time.After(backoff):
			backoff *= 2
		case <-ctx.Done():
			return plumbing.ZeroHash, classify(ctx.Err(), "fetching "+src.describe())
		}
	}
}

// checkFreeSpace refuses to start a fetch on a nearly full disk, which the
// cache may share with etcd.
func (c *Cache) checkFreeSpace(src Source) error {
	if c.opts.MinFreeBytes < 0 {
		return nil
	}
	free, ok := freeBytes(c.opts.Dir)
	if !ok || free >= c.opts.MinFreeBytes {
		return nil
	}
	return newError(ReasonLimitExceeded, nil, "fetching %s: disk nearly full: the git cache's filesystem has %s free, below the reserve of %s",
		src.describe(), formatBytes(free), formatBytes(c.opts.MinFreeBytes))
}

func (c *Cache) fetchOnce(ctx context.Context, src Source, st *store, want plumbing.Hash) (plumbing.Hash, error) {
	doing := "fetching " + src.describe()
	auth, err := src.Auth.method(src.URL)
	if err != nil {
		return plumbing.ZeroHash, classify(err, doing)
	}
	if packs, shallows := countPacks(st.dir), countShallows(st.dir); packs > maxPacks || shallows > maxShallows {
		// Every shallow fetch adds a pack and a shallow line; go-git sends
		// every shallow line and searches every pack, so each push made later
		// fetches of the URL slower. A server can add shallow lines without a
		// pack too: go-git writes them before it reads the pack, and a fetch
		// that then fails leaves them (attacker review: 1,000,000 lines after
		// 210 syncs, 49 s per sync). The store is only a cache: start it
		// again, and this fetch brings what is needed, within its limits.
		klog.FromContext(ctx).V(2).Info("Starting a git cache store afresh", "dir", st.dir, "packs", packs, "shallows", shallows)
		_ = os.RemoveAll(st.dir)
	}
	repo, storage, err := c.openOrRecreate(st.dir)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	defer func() { storage.Close() }()

	offered := hasRefs(repo)
	if err := c.download(ctx, repo, src, auth); err != nil {
		return plumbing.ZeroHash, err
	}
	if src.Commit != "" && !hasCommit(repo, want) && offered {
		// go-git offers the commits the store holds; a server then sends
		// nothing for an older commit it takes us to have. Ask again from
		// an empty store, which offers none.
		storage.Close()
		_ = os.RemoveAll(st.dir)
		if repo, storage, err = c.openOrRecreate(st.dir); err != nil {
			return plumbing.ZeroHash, err
		}
		if err := c.download(ctx, repo, src, auth); err != nil {
			return plumbing.ZeroHash, err
		}
	}
	if hasCommit(repo, want) {
		return want, nil
	}
	if src.Commit != "" {
		return plumbing.ZeroHash, newError(ReasonRefNotFound, nil, "commit %s not found in %s", src.Commit, redact(src.URL))
	}
	return fetchedCommit(repo, src)
}

// download fetches src's ref (or pinned commit) into repo, shallow, under one
// transfer, so that its byte limit and low-speed check cover every attempt.
func (c *Cache) download(ctx context.Context, repo *gogit.Repository, src Source, auth transport.AuthMethod) error {
	t := c.startTransfer(ctx, "fetching "+src.describe(), src)
	defer t.end()
	opts := &gogit.FetchOptions{
		RemoteName:   "origin",
		RemoteURL:    src.URL,
		Depth:        1,
		Auth:         auth,
		ProxyOptions: t.sshProxy(src.URL),
		Tags:         gogit.NoTags,
		Force:        true,
		RefSpecs:     []config.RefSpec{src.refSpec()},
	}
	err := t.fetch(repo, opts)
	if err == nil || src.Commit == "" || Reason(err) != ReasonFetchFailed {
		return err
	}
	// A server may refuse a commit asked for by hash: git's upload-pack over
	// SSH, in protocol v0 as go-git speaks it, does unless
	// uploadpack.allowReachableSHA1InWant is set (over HTTP it serves any
	// commit reachable from a ref, which is what test/gitserver relies on). Then the commit can only
	// come with the history of every branch. That is kept, because pinning a
	// commit must work against such servers, but bounded: it shares this
	// transfer, so the two attempts together stay under MaxFetchBytes and
	// the low-speed check; a repository whose history is larger fails with
	// ReasonLimitExceeded instead of filling the disk. A depth limit would
	// not bound bytes any better and would miss older commits.
	klog.FromContext(ctx).V(2).Info("The server refused a commit by hash; fetching branch history", "source", src.describe(), "error", err.Error())
	opts.Depth = 0
	opts.RefSpecs = []config.RefSpec{"+refs/heads/*:refs/alumiini/heads/*"}
	capped, err := gogit.Open(&fallbackRefs{Storer: repo.Storer, src: src, refs: map[plumbing.ReferenceName]*plumbing.Reference{}}, nil)
	if err != nil {
		return classify(err, "fetching "+src.describe())
	}
	return t.fetch(capped, opts)
}

// fetch runs one go-git fetch under t.
func (t *transfer) fetch(repo *gogit.Repository, opts *gogit.FetchOptions) error {
	t.shallow.Store(opts.Depth > 0)
	return t.result(fetchContext(t.ctx, repo, opts))
}

// maxFallbackBranches bounds the branches a pinned commit's fallback fetch
// takes from a server (attacker review: one advertised 250,000).
const maxFallbackBranches = 4096

// fallbackRefs is the store as a pinned commit's fallback fetch sees it: the
// branches it fetches are kept in memory, at most maxFallbackBranches, and
// dropped after it. Only the objects they bring are wanted. Written to the
// store, they were a file each, and directories as deep as the server named
// them (attacker reviews: 250,000 files, 982 MiB; 20 branches 1,900
// directories deep, 149 MiB that the cache counted as 1.5 KB and that hung
// every later sync of the store).
type fallbackRefs struct {
	storage.Storer
	src  Source
	refs map[plumbing.ReferenceName]*plumbing.Reference
}

func (r *fallbackRefs) SetReference(ref *plumbing.Reference) error {
	if _, known := r.refs[ref.Name()]; !known && len(r.refs) >= maxFallbackBranches {
		return newError(ReasonLimitExceeded, nil, "fetching %s: the server refused the commit by hash, and has over %d branches to search for it",
			r.src.describe(), maxFallbackBranches)
	}
	r.refs[ref.Name()] = ref
	return nil
}

func (r *fallbackRefs) CheckAndSetReference(ref, _ *plumbing.Reference) error {
	return r.SetReference(ref)
}

// PackfileWriter passes the store's own through: without it go-git unpacks
// every object of the fetch into a loose file, and its deltas into memory
// (attacker review).
func (r *fallbackRefs) PackfileWriter() (io.WriteCloser, error) {
	pw, ok := r.Storer.(storer.PackfileWriter)
	if !ok {
		return nil, fmt.Errorf("internal error: the git cache store %T cannot write packs", r.Storer)
	}
	return pw.PackfileWriter()
}

func (r *fallbackRefs) Reference(name plumbing.ReferenceName) (*plumbing.Reference, error) {
	if ref, ok := r.refs[name]; ok {
		return ref, nil
	}
	return r.Storer.Reference(name)
}

func fetchContext(ctx context.Context, repo *gogit.Repository, opts *gogit.FetchOptions) error {
	if err := repo.FetchContext(ctx, opts); err != nil && !errors.Is(err, gogit.NoErrAlreadyUpToDate) {
		return err
	}
	return nil
}

// fetchedCommit is the commit the fetched ref points at: a branch moved on
// since Latest, or a tag, peeled.
func fetchedCommit(repo *gogit.Repository, src Source) (plumbing.Hash, error) {
	doing := "fetching " + src.describe()
	ref, err := repo.Reference(src.ref(), true)
	if err != nil {
		return plumbing.ZeroHash, classify(err, doing)
	}
	if src.Tag == "" {
		return ref.Hash(), nil
	}
	if err := checkObjectSize(repo, plumbing.TagObject, ref.Hash(), maxCommitBytes); err != nil {
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			return ref.Hash(), nil // a lightweight tag names the commit itself
		}
		return plumbing.ZeroHash, err
	}
	tag, err := repo.TagObject(ref.Hash())
	if err != nil {
		return plumbing.ZeroHash, classify(err, doing)
	}
	commit, err := tag.Commit()
	if err != nil {
		return plumbing.ZeroHash, classify(err, doing)
	}
	return commit.Hash, nil
}

// removeTempPacks deletes what a failed fetch left half-written: go-git
// leaves its temporary pack behind when a transfer breaks, and nothing else
// would ever remove it.
func removeTempPacks(dir string) {
	tmp, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "tmp_*"))
	for _, f := range tmp {
		_ = os.Remove(f)
	}
}

func (c *Cache) acquire(key string) *store {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.stores[key]
	if st == nil {
		st = newStore(filepath.Join(c.opts.Dir, key))
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
		cacheEvictions.Inc()
		if !oldest.tryLock() {
			// Unused stores are never locked (a user counts itself first);
			// should that fail, waiting here under c.mu would stop every
			// tenant's git work.
			return
		}
		oldest.close()
		_ = os.RemoveAll(oldest.dir)
		oldest.unlock()
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

// has reports whether st holds the commit hash; waiting for the store ends
// with ctx.
func (c *Cache) has(ctx context.Context, st *store, src Source, hash plumbing.Hash) (bool, error) {
	if err := st.lock(ctx, src); err != nil {
		return false, err
	}
	defer st.unlock()
	return c.hasLocked(st, hash), nil
}

func newStore(dir string) *store {
	return &store{dir: dir, locked: make(chan struct{}, 1)}
}

// lock takes the store's lock for src, or fails once ctx ends.
func (st *store) lock(ctx context.Context, src Source) error {
	if st.tryLock() {
		return nil // free, as it mostly is: no wait to note
	}
	what := "the git cache of " + redact(src.URL) + ", which another fetch or read of it holds"
	doneWaiting := noteWait(ctx, what)
	defer doneWaiting()
	select {
	case st.locked <- struct{}{}:
		return nil
	case <-ctx.Done():
		return classify(ctx.Err(), "waiting for "+what)
	}
}

// tryLock takes the store's lock if it is free, without waiting.
func (st *store) tryLock() bool {
	select {
	case st.locked <- struct{}{}:
		return true
	default:
		return false
	}
}

func (st *store) unlock() { <-st.locked }

func (c *Cache) hasLocked(st *store, hash plumbing.Hash) bool {
	if _, err := os.Stat(filepath.Join(st.dir, "HEAD")); err != nil {
		return false
	}
	repo, err := c.open(st)
	if err != nil {
		return false
	}
	return hasCommit(repo, hash)
}

// hasCommit looks the commit up without decoding it: a hostile commit may be
// huge once inflated.
func hasCommit(repo *gogit.Repository, hash plumbing.Hash) bool {
	_, err := repo.Storer.EncodedObject(plumbing.CommitObject, hash)
	return err == nil
}

// open returns the store's repository, opening it if needed; the store's lock is held.
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

// close releases the open repository; the store's lock is held.
func (st *store) close() {
	if st.storage != nil {
		st.storage.Close()
	}
	st.repo, st.storage = nil, nil
}

// maxPacks is how many packs a store gathers before it is started afresh.
const maxPacks = 16

func countPacks(dir string) int {
	packs, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "*.pack"))
	return len(packs)
}

// maxShallows is how many shallow lines a store keeps before it is started
// afresh. A successful fetch adds one (and a pack), so a store reaching
// maxPacks holds about 16; 4× leaves room for more than one line a fetch.
// Only a server's failed fetches (lines without a pack) reach it.
const maxShallows = 4 * maxPacks

// countShallows is how many shallow lines (a hash and a newline each) the
// store's shallow file holds.
func countShallows(dir string) int {
	info, err := os.Stat(filepath.Join(dir, "shallow"))
	if err != nil {
		return 0
	}
	return int(info.Size() / 41)
}

// openOrRecreate opens the store in dir; one a crash or a cut transfer left
// unreadable is only a cache, and is made anew.
func (c *Cache) openOrRecreate(dir string) (*gogit.Repository, *filesystem.Storage, error) {
	repo, storage, err := openStore(dir, c.objects)
	if err == nil {
		return repo, storage, nil
	}
	klog.InfoS("Recreating an unreadable git cache store", "dir", dir, "error", err.Error())
	_ = os.RemoveAll(dir)
	if repo, storage, err = openStore(dir, c.objects); err != nil {
		return nil, nil, fmt.Errorf("creating the git cache store %s: %w", dir, err)
	}
	return repo, storage, nil
}

func hasRefs(repo *gogit.Repository) bool {
	refs, err := repo.References()
	if err != nil {
		return false
	}
	defer refs.Close()
	found := false
	_ = refs.ForEach(func(ref *plumbing.Reference) error {
		if ref.Type() == plumbing.HashReference {
			found = true
			return storer.ErrStop
		}
		return nil
	})
	return found
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

// waitForSlot takes one of slots for tenant, noting for callers of the
// shared work running under ctx what it waits for, and observing the wait
// in h.
func waitForSlot(ctx context.Context, s *slots.Slots, tenant string, h prometheus.Histogram, what string) (release func(), err error) {
	waiting, doneWaiting := time.Now(), noteWait(ctx, what)
	defer doneWaiting()
	if err := ctx.Err(); err != nil {
		// Acquire may still take a free slot under an ended context.
		return nil, err
	}
	release, err = s.Acquire(ctx, tenant)
	h.Observe(time.Since(waiting).Seconds())
	return release, err
}
