package apply

import (
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// SharedMapper is the discovery mapper the appliers of every identity
// share. It bounds how often passes that run at every idle check (drift
// watches, health rechecks) have discovery read again: a kind truly gone
// would otherwise cost one read per GitRepository per idle round.
type SharedMapper struct {
	meta.ResettableRESTMapper
	idleReadAt atomic.Int64 // UnixNano
}

// IdleReadEvery is how often, at most, idle passes have discovery read
// again, for all GitRepositories together.
const IdleReadEvery = time.Minute

// NewSharedMapper wraps the discovery mapper the appliers share.
func NewSharedMapper(mapper meta.ResettableRESTMapper) *SharedMapper {
	return &SharedMapper{ResettableRESTMapper: mapper}
}

// MayReadAgainWhenIdle reports whether an idle pass may have discovery read
// again now, and counts it if so.
func (m *SharedMapper) MayReadAgainWhenIdle() bool {
	last, now := m.idleReadAt.Load(), time.Now().UnixNano()
	return now-last >= int64(IdleReadEvery) && m.idleReadAt.CompareAndSwap(last, now)
}

// ReadAgainWhenIdle has discovery read again if MayReadAgainWhenIdle
// allows it, and says whether it did.
func (m *SharedMapper) ReadAgainWhenIdle() bool {
	if !m.MayReadAgainWhenIdle() {
		return false
	}
	m.Reset()
	return true
}

// KindMapper is one sync's, prune's or health wait's view of the shared
// discovery mapper. A kind the mapper does not know makes it read discovery
// again, since the kind may have been installed after the mapper last
// looked (alumiini's own kinds too, when discovery was first read before
// the aggregator saw alumiini available). It reads it again at most once,
// so a commit, inventory or list of health checks naming many unknown
// kinds costs one discovery read, not one each. Not safe for concurrent
// use.
type KindMapper struct {
	mapper meta.ResettableRESTMapper
	// mayReadAgain, if set, decides whether a miss reads discovery again
	// (idle passes).
	mayReadAgain func() bool
	// missesTrusted: discovery was read again during this pass, or the
	// idle bound refused the read, so a miss is taken as it is.
	missesTrusted bool
}

// KindMapper returns a mapper of kinds for one sync, prune or health wait
// that follows a sync.
func (a *Applier) KindMapper() *KindMapper {
	return &KindMapper{mapper: a.Mapper}
}

// IdleKindMapper is KindMapper for a pass that runs at every idle check:
// it reads discovery again only as SharedMapper.MayReadAgainWhenIdle
// allows, and never over a mapper that is not shared (tests').
func (a *Applier) IdleKindMapper() *KindMapper {
	k := a.KindMapper()
	k.mayReadAgain = func() bool { return false }
	if shared, ok := a.Mapper.(*SharedMapper); ok {
		k.mayReadAgain = shared.MayReadAgainWhenIdle
	}
	return k
}

// Mapping finds how the cluster serves gvk. A kind it does not serve gives
// an error for which meta.IsNoMatchError is true.
func (k *KindMapper) Mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	mapping, err := k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) && !k.missesTrusted {
		if k.mayReadAgain == nil || k.mayReadAgain() {
			k.mapper.Reset()
			mapping, err = k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		}
		k.missesTrusted = true
	}
	if meta.IsNoMatchError(err) {
		return nil, unservedKind{gvk: gvk, err: err}
	}
	return mapping, err
}

// readAgain makes the mapper read discovery again, as once CRDs of the
// commit were established.
func (k *KindMapper) readAgain() {
	k.mapper.Reset()
	k.missesTrusted = true
}
