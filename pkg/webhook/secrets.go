package webhook

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
)

const (
	// maxCachedSecrets bounds the Secret cache.
	maxCachedSecrets = 4096
	// secretReadTimeout bounds one read of a Secret.
	secretReadTimeout = 10 * time.Second
	// maxSecretValueBytes: a webhook secret longer than this is not kept
	// (and so never verifies); providers' own limits are far below it.
	maxSecretValueBytes = 1024
)

// secretCache remembers Secrets' data for a short while, so a burst of pushes
// (or a flood naming a Secret that does not exist) reads each Secret once.
// A Secret that does not exist is remembered as holding no data; other errors
// are not remembered, so the next push tries again.
type secretCache struct {
	read func(ctx context.Context, namespace, name string) (map[string][]byte, error)
	ttl  time.Duration
	now  func() time.Time

	mu      sync.Mutex
	entries map[types.NamespacedName]cachedSecret
	// reads makes concurrent misses for one Secret share one read.
	reads singleflight.Group
}

type cachedSecret struct {
	data    map[string][]byte
	expires time.Time
}

func newSecretCache(read func(context.Context, string, string) (map[string][]byte, error), ttl time.Duration, now func() time.Time) *secretCache {
	return &secretCache{read: read, ttl: ttl, now: now, entries: make(map[types.NamespacedName]cachedSecret)}
}

// get returns the Secret's data, nil if it does not exist. The caller must not
// change the map.
func (c *secretCache) get(ctx context.Context, key types.NamespacedName) (map[string][]byte, error) {
	if data, ok := c.lookup(key); ok {
		return data, nil
	}
	ch := c.reads.DoChan(key.String(), func() (any, error) {
		if data, ok := c.lookup(key); ok {
			return data, nil
		}
		// The read is shared, so one caller going away must not fail it
		// for the others.
		readCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), secretReadTimeout)
		defer cancel()
		data, err := c.read(readCtx, key.Namespace, key.Name)
		if apierrors.IsNotFound(err) {
			klog.V(2).InfoS("Webhook Secret not found", "secret", key)
			data, err = nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading Secret %s: %w", key, err)
		}
		data = usedKeys(data)
		c.store(key, data)
		return data, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		data, _ := res.Val.(map[string][]byte)
		return data, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("reading Secret %s: %w", key, ctx.Err())
	}
}

// usedKeys keeps of a Secret only what the receiver checks signatures with:
// "token" and the providers' keys, each at most maxSecretValueBytes. A
// tenant's webhook Secret may hold anything; the cache must not.
func usedKeys(data map[string][]byte) map[string][]byte {
	kept := map[string][]byte{}
	for key, value := range data {
		if _, provider := providers[key]; (key == "token" || provider) && len(value) <= maxSecretValueBytes {
			kept[key] = value
		}
	}
	if len(kept) == 0 {
		return nil
	}
	return kept
}

func (c *secretCache) lookup(key types.NamespacedName) (map[string][]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if ok && !c.now().Before(e.expires) {
		delete(c.entries, key) // expired: drop it now, not when the cache is full
		ok = false
	}
	if !ok {
		return nil, false
	}
	return e.data, true
}

func (c *secretCache) store(key types.NamespacedName, data map[string][]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if _, ok := c.entries[key]; !ok && len(c.entries) >= maxCachedSecrets {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		// All still fresh: drop any one; the cache only saves reads.
		for k := range c.entries {
			if len(c.entries) < maxCachedSecrets {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = cachedSecret{data: data, expires: now.Add(c.ttl)}
}
