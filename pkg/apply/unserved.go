package apply

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// pruneKinds is KindMapper for a prune, which must tell an object that
// went with its kind (a deleted CRD's) from one it cannot see for now, and
// forget only the first.
type pruneKinds struct {
	*KindMapper
	// rereadForPath: the kinds whose path was not found during this prune,
	// for which discovery was read again.
	rereadForPath map[schema.GroupKind]bool
	// served remembers servedInDiscovery's answers during this prune: an
	// inventory may hold thousands of objects of an API that is down.
	served map[schema.GroupKind]servedAnswer
}

type servedAnswer struct {
	served bool
	err    error
}

func (a *Applier) pruneKinds() *pruneKinds {
	return &pruneKinds{KindMapper: a.KindMapper(), rereadForPath: map[schema.GroupKind]bool{}, served: map[schema.GroupKind]servedAnswer{}}
}

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
func (a *Applier) appliedMapping(ctx context.Context, kinds *pruneKinds, gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
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
	if gk.Group == "" {
		return false, errors.New("the core group's kinds never go") // so something else failed: keep it
	}
	if a.Discovery == nil {
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

// getApplied reads an applied object, and the client to reach it by. A
// 404 for the path rather than the object (kube-apiserver answers the path
// of a version it no longer serves with a bare 404) means the mapper read
// discovery before a CRD's upgrade stopped serving the version it names:
// discovery is read again, once a pass for each kind, and the object looked
// up through the version served now. A path still not found is an error:
// the entry stays, to prune later.
func (a *Applier) getApplied(ctx context.Context, kinds *pruneKinds, e Entry) (dynamic.ResourceInterface, *unstructured.Unstructured, error) {
	gvk := e.GroupVersionKind()
	for {
		mapping, err := a.appliedMapping(ctx, kinds, gvk)
		if err != nil {
			return nil, nil, err
		}
		client := a.Client.Resource(mapping.Resource).Namespace(namespaceIn(mapping, e.Namespace))
		live, err := client.Get(ctx, e.Name, metav1.GetOptions{})
		if !pathNotFound(err) {
			return client, live, err
		}
		if kinds.rereadForPath[gvk.GroupKind()] {
			return nil, nil, fmt.Errorf("kube-apiserver serves no %s, though its discovery lists it: kept, to prune later",
				mapping.Resource)
		}
		kinds.rereadForPath[gvk.GroupKind()] = true
		kinds.readAgain()
	}
}

// pathNotFound tells a 404 for a path kube-apiserver does not serve (a bare
// "404 page not found") from one for an object (a Status naming it).
func pathNotFound(err error) bool {
	return apierrors.IsNotFound(err) && apierrors.HasStatusCause(err, metav1.CauseTypeUnexpectedServerResponse)
}
