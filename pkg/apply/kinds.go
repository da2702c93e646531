package apply

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Kinds maps kinds to the resources that serve them for one sync, prune or
// health wait. A kind the mapper does not know makes it ask discovery
// again, since the kind may have been installed after the mapper last
// looked (alumiini's own kinds too, when discovery was first read before
// the aggregator saw alumiini available). It asks at most once, so a
// commit, inventory or list of health checks naming many unknown kinds
// costs one discovery read, not one each. Not safe for concurrent use.
type Kinds struct {
	mapper meta.ResettableRESTMapper
	asked  bool
}

// Kinds returns a mapping of kinds for one sync, prune or health wait.
func (a *Applier) Kinds() *Kinds {
	return &Kinds{mapper: a.Mapper}
}

// Mapping finds how the cluster serves gvk. A kind it does not serve gives
// an error for which meta.IsNoMatchError is true.
func (k *Kinds) Mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	mapping, err := k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) && !k.asked {
		k.Reset()
		mapping, err = k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if meta.IsNoMatchError(err) {
		return nil, unservedKind{gvk: gvk, err: err}
	}
	return mapping, err
}

// Reset makes the mapper read discovery again, as after CRDs of the
// commit were established.
func (k *Kinds) Reset() {
	k.mapper.Reset()
	k.asked = true
}

// unservedKind says a kind is not served in words a repository's author
// acts on, and stays a NoMatch error for callers that treat its objects
// as gone.
type unservedKind struct {
	gvk schema.GroupVersionKind
	err error
}

func (u unservedKind) Error() string {
	return fmt.Sprintf("the cluster does not serve %s: is its CRD installed?", u.gvk.GroupVersion().WithKind(u.gvk.Kind))
}

func (u unservedKind) Unwrap() error { return u.err }
