package apply

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// countingMapper knows only ConfigMaps and counts how often discovery is
// asked again.
type countingMapper struct {
	meta.RESTMapper
	resets int
}

func (m *countingMapper) Reset() { m.resets++ }

func newCountingMapper() *countingMapper {
	known := meta.NewDefaultRESTMapper(nil)
	known.Add(schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, meta.RESTScopeNamespace)
	return &countingMapper{RESTMapper: known}
}

// TestManyUnknownKindsAskDiscoveryOnce: a commit or list of health checks
// naming many kinds nobody serves costs one discovery read per sync, not one
// per kind, and each is named as not served.
func TestManyUnknownKindsAskDiscoveryOnce(t *testing.T) {
	mapper := newCountingMapper()
	kinds := (&Applier{Mapper: mapper}).Kinds()
	for _, kind := range []string{"A", "B", "C", "ConfigMap", "D"} {
		gvk := schema.GroupVersionKind{Group: "nowhere.example.com", Version: "v1", Kind: kind}
		if kind == "ConfigMap" {
			gvk.Group = ""
		}
		_, err := kinds.Mapping(gvk)
		if kind == "ConfigMap" {
			if err != nil {
				t.Errorf("ConfigMap: %v", err)
			}
			continue
		}
		if !meta.IsNoMatchError(err) || !strings.Contains(err.Error(), "does not serve nowhere.example.com/v1, Kind="+kind) {
			t.Errorf("%s: %v, want a NoMatch error naming it as not served", kind, err)
		}
	}
	if mapper.resets != 1 {
		t.Errorf("discovery was asked again %d times, want once", mapper.resets)
	}
	if (&Applier{Mapper: mapper}).Kinds().Mapping(schema.GroupVersionKind{Group: "x", Version: "v1", Kind: "Y"}); mapper.resets != 2 {
		t.Errorf("the next sync's first unknown kind did not ask discovery again")
	}
}

// TestAKindServedAfterDiscoveryWasReadIsFound: the mapper has read
// discovery before a kind was served (as alumiini's own GitRepository is
// when alumiini starts before the aggregator sees it available); the kind is
// still found once served, by a health wait as by a sync.
func TestAKindServedAfterDiscoveryWasReadIsFound(t *testing.T) {
	a := newApplier(t)
	gadget := schema.GroupVersionKind{Group: "late.example.com", Version: "v1", Kind: "Gadget"}
	if _, err := a.Kinds().Mapping(gadget); !meta.IsNoMatchError(err) {
		t.Fatalf("before its CRD: %v, want not served", err)
	}
	// Another applier (its own mapper) installs the CRD and, once it is
	// established, a Gadget.
	admin := newApplier(t)
	ns := namespace(t, admin)
	if _, err := admin.Apply(context.Background(), Owner{Namespace: "default", Name: "late"}, render(t, "crd.yaml", `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.late.example.com
spec:
  group: late.example.com
  names: {kind: Gadget, plural: gadgets, singular: gadget}
  scope: Namespaced
  versions:
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}
`, "gadget.yaml", "apiVersion: late.example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n"), Options{DefaultNamespace: ns}); err != nil {
		t.Fatal(err)
	}
	mapping, err := a.Kinds().Mapping(gadget)
	if err != nil {
		t.Fatalf("after its CRD: %v", err)
	}
	if mapping.Resource.Resource != "gadgets" {
		t.Errorf("mapped to %v", mapping.Resource)
	}
}

// TestPruningAKindNoLongerServedIsNotAFailure: what an inventory holds of a
// kind whose CRD was deleted went with the CRD; pruning it succeeds.
func TestPruningAKindNoLongerServedIsNotAFailure(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	gone := Entry{Group: "gone.example.com", Version: "v1", Kind: "Relic", Namespace: ns, Name: "r"}
	cm := Entry{Version: "v1", Kind: "ConfigMap", Namespace: ns, Name: "never-made"}
	deleted, err := a.Delete(context.Background(), Owner{Namespace: "default", Name: "relics"}, []Entry{gone, cm}, nil)
	if err != nil || deleted != 0 {
		t.Errorf("pruning an unserved kind and a missing object: %d deleted, %v; want 0 and no error", deleted, err)
	}
}
