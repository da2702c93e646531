package apply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

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
	// reread: discovery was read again during this pass, so a miss is
	// trusted.
	reread bool
}

// KindMapper returns a mapper of kinds for one sync, prune or health wait.
func (a *Applier) KindMapper() *KindMapper {
	return &KindMapper{mapper: a.Mapper}
}

// Mapping finds how the cluster serves gvk. A kind it does not serve gives
// an error for which meta.IsNoMatchError is true.
func (k *KindMapper) Mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	mapping, err := k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) && !k.reread {
		k.readAgain()
		mapping, err = k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if meta.IsNoMatchError(err) {
		return nil, unservedKind{gvk: gvk, err: err}
	}
	return mapping, err
}

// readAgain makes the mapper read discovery again: after a miss, or once
// CRDs of the commit were established.
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
	served, err := a.servedInDiscovery(ctx, gvk.GroupKind())
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
