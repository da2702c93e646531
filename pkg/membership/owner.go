// Package membership says which replica owns a GitRepository when replicas
// share the work. Each replica holds a Lease of its own (alumiini-replica-
// followed by its name, held with client-go's leader election); the live
// replicas are those whose Lease is held and was seen renewed within the
// lease duration; each GitRepository belongs to one of them by rendezvous
// hashing of its namespace/name over their names. Names, not per-process
// identities, are hashed, so a replica that restarts takes its share back,
// and a replica that joins or leaves moves only the GitRepositories that
// must move (about 1/n of them).
package membership

import "hash/fnv"

// Owner is the member of names that owns key by rendezvous (highest random
// weight) hashing, or "" when names is empty.
func Owner(key string, names []string) string {
	best, bestScore := "", uint64(0)
	for _, name := range names {
		if score := weight(name, key); best == "" || score > bestScore || score == bestScore && name < best {
			best, bestScore = name, score
		}
	}
	return best
}

// weight is FNV-1a of name and key, finished with splitmix64's mixer so
// that names differing in one character spread evenly.
func weight(name, key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(key))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
