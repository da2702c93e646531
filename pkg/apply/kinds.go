package apply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	// reread: discovery was read again during this pass (or may not be),
	// so a miss is trusted.
	reread bool
	// rereadForPath: the kinds whose path was not found during this pass,
	// for which discovery was read again.
	rereadForPath map[schema.GroupKind]bool
	// served remembers servedInDiscovery's answers during this pass.
	served map[schema.GroupKind]servedAnswer
}

type servedAnswer struct {
	served bool
	err    error
}

// KindMapper returns a mapper of kinds for one sync, prune or health wait
// that follows a sync.
func (a *Applier) KindMapper() *KindMapper {
	return &KindMapper{mapper: a.Mapper, rereadForPath: map[schema.GroupKind]bool{}, served: map[schema.GroupKind]servedAnswer{}}
}

// IdleKindMapper is KindMapper for a pass that runs at every idle check:
// it reads discovery again only as SharedMapper.MayReadAgainWhenIdle allows.
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
	if meta.IsNoMatchError(err) && !k.reread {
		if k.mayReadAgain == nil || k.mayReadAgain() {
			k.mapper.Reset()
			mapping, err = k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		}
		k.reread = true
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
	k.reread = true
}

// unservedKind says a kind is not served in words a repository's author
// acts on, and stays a NoMatch error for callers that look for one.
type unservedKind struct {
	gvk schema.GroupVersionKind
	err error
}

func (u unservedKind) Error() string {
	return fmt.Sprintf("the cluster does not serve %s: is its CRD installed (or its APIService available)?",
		u.gvk.GroupVersion().WithKind(u.gvk.Kind))
}

func (u unservedKind) Unwrap() error { return u.err }

// errKindGone: no version of an applied object's kind is served, and
// discovery of its group answered in full, so the object went with its
// kind (its CRD was deleted).
var errKindGone = errors.New("its kind is served in no version")

// appliedMapping finds how to reach an object applied as gvk, for pruning
// it. The version it was applied at may no longer be served (a CRD's
// upgrade dropped it) while another is, and the object is still there. The
// mapper's discovery may have missed a group whose server did not answer
// (an aggregated API restarting: client-go drops a group it could not
// read), and the object is still there too. So a kind the mapper knows in
// no version counts as gone (errKindGone) only when discovery of its group,
// asked directly, says it is not served; anything else is an error, and
// the entry stays in the inventory to prune later.
func (a *Applier) appliedMapping(ctx context.Context, kinds *KindMapper, gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	mapping, err := kinds.Mapping(gvk)
	if !meta.IsNoMatchError(err) {
		return mapping, err
	}
	if mapping, err := kinds.mapper.RESTMapping(gvk.GroupKind()); err == nil {
		return mapping, nil // served in another version
	}
	answer, asked := kinds.served[gvk.GroupKind()]
	if !asked {
		answer.served, answer.err = a.servedInDiscovery(ctx, gvk.GroupKind())
		kinds.served[gvk.GroupKind()] = answer // once a pass: an inventory may hold thousands
	}
	served, err := answer.served, answer.err
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s is not known to be served, and asking discovery failed, so it is kept: %w",
			gvk.GroupKind(), err)
	case served:
		return nil, fmt.Errorf("%s is served, but alumiini's discovery has not seen it yet: pruning it again later", gvk.GroupKind())
	}
	return nil, errKindGone
}

// servedInDiscovery asks kube-apiserver whether any version of gk's group
// serves gk. A group served by an aggregated API that is not available is
// listed, but its versions do not answer: that is an error, not "no".
func (a *Applier) servedInDiscovery(ctx context.Context, gk schema.GroupKind) (bool, error) {
	if a.Discovery == nil || gk.Group == "" {
		return false, errors.New("no discovery client to ask")
	}
	raw, err := a.Discovery.RESTClient().Get().AbsPath("/apis", gk.Group).Do(ctx).Raw()
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading group %s: %w", gk.Group, err)
	}
	var group metav1.APIGroup
	if err := json.Unmarshal(raw, &group); err != nil {
		return false, fmt.Errorf("reading group %s: %w", gk.Group, err)
	}
	for _, version := range group.Versions {
		resources, err := a.Discovery.ServerResourcesForGroupVersion(version.GroupVersion)
		if err != nil {
			return false, fmt.Errorf("reading %s: %w", version.GroupVersion, err)
		}
		for _, r := range resources.APIResources {
			if r.Kind == gk.Kind {
				return true, nil
			}
		}
	}
	return false, nil
}
