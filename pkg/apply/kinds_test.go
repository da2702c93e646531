package apply

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// countingMapper knows only ConfigMaps and counts how often discovery is
// read again.
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

// TestManyUnknownKindsReadDiscoveryOnce: a commit or list of health checks
// naming many kinds nobody serves costs one discovery read per sync, not one
// per kind, and each is named as not served.
func TestManyUnknownKindsReadDiscoveryOnce(t *testing.T) {
	mapper := newCountingMapper()
	kinds := (&Applier{Mapper: mapper}).KindMapper()
	for _, kind := range []string{"A", "B", "C", "D"} {
		_, err := kinds.Mapping(schema.GroupVersionKind{Group: "nowhere.example.com", Version: "v1", Kind: kind})
		if !meta.IsNoMatchError(err) || !strings.Contains(err.Error(), "does not serve nowhere.example.com/v1, Kind="+kind) {
			t.Errorf("%s: %v, want a NoMatch error naming it as not served", kind, err)
		}
	}
	if _, err := kinds.Mapping(schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}); err != nil {
		t.Errorf("ConfigMap: %v", err)
	}
	if mapper.resets != 1 {
		t.Errorf("discovery was read again %d times, want once", mapper.resets)
	}
	next := (&Applier{Mapper: mapper}).KindMapper()
	_, _ = next.Mapping(schema.GroupVersionKind{Group: "nowhere.example.com", Version: "v1", Kind: "A"})
	if mapper.resets != 2 {
		t.Errorf("the next sync's first unknown kind did not read discovery again")
	}
}

// TestAKindServedAfterDiscoveryWasReadIsFound: the mapper read discovery
// before a kind was served (as alumiini's own GitRepository is when alumiini
// starts before the aggregator sees it available); the kind is still found
// once served.
func TestAKindServedAfterDiscoveryWasReadIsFound(t *testing.T) {
	a := newApplier(t)
	gadget := schema.GroupVersionKind{Group: "late.example.com", Version: "v1", Kind: "Gadget"}
	if _, err := a.KindMapper().Mapping(gadget); !meta.IsNoMatchError(err) {
		t.Fatalf("before its CRD: %v, want not served", err)
	}
	// Another applier (its own mapper) installs the CRD and, once it is
	// established, a Gadget.
	admin := newApplier(t)
	ns := namespace(t, admin)
	if _, err := admin.Apply(context.Background(), Owner{Namespace: "default", Name: "late"},
		render(t, "crd.yaml", crdYAML("gadgets", "late.example.com", "Gadget", "v1"),
			"gadget.yaml", "apiVersion: late.example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n"),
		Options{DefaultNamespace: ns}); err != nil {
		t.Fatal(err)
	}
	mapping, err := a.KindMapper().Mapping(gadget)
	if err != nil {
		t.Fatalf("after its CRD: %v", err)
	}
	if mapping.Resource.Resource != "gadgets" {
		t.Errorf("mapped to %v", mapping.Resource)
	}
}

// TestPruningAnObjectWhoseCRDWasDeletedSucceeds: what an inventory holds of
// a kind whose CRD was deleted went with the CRD; the next prune succeeds
// and the inventory forgets it, where before each prune failed for ever
// (and held a deleted GitRepository on its finalizer). Both ways a kind
// goes: its group still served by another CRD, and its group gone.
func TestPruningAnObjectWhoseCRDWasDeletedSucceeds(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	ctx := context.Background()
	applyCRD(t, a, Owner{Namespace: "default", Name: "relic-crd"}, crdYAML("relics", "gone.example.com", "Relic", "v1"), "gone.example.com/v1", "Relic")
	applyCRD(t, a, Owner{Namespace: "default", Name: "ruin-crd"}, crdYAML("ruins", "gone.example.com", "Ruin", "v1"), "gone.example.com/v1", "Ruin")
	owner := Owner{Namespace: "default", Name: "relics"}
	configMap := render(t, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: stays\n")
	ruin := render(t, "ruin.yaml", "apiVersion: gone.example.com/v1\nkind: Ruin\nmetadata:\n  name: r\n")
	first, err := a.Apply(ctx, owner, append(append(configMap, ruin...),
		render(t, "relic.yaml", "apiVersion: gone.example.com/v1\nkind: Relic\nmetadata:\n  name: r\n")...),
		Options{DefaultNamespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	deleteAndWait(t, a, crdsResource, "", "relics.gone.example.com") // the group still serves Ruins
	waitUnserved(t, a, schema.GroupVersionKind{Group: "gone.example.com", Version: "v1", Kind: "Relic"})
	second, err := a.Apply(ctx, owner, append(configMap, ruin...), Options{DefaultNamespace: ns, Prune: true, Previous: first.Inventory})
	if err != nil {
		t.Fatalf("pruning the Relic whose CRD was deleted: %v", err)
	}
	if len(second.Inventory) != 2 || len(second.PruneFailed) != 0 {
		t.Errorf("inventory %v, failed %v: want the ConfigMap and the Ruin", second.Inventory, second.PruneFailed)
	}
	deleteAndWait(t, a, crdsResource, "", "ruins.gone.example.com") // the group is gone
	waitUnserved(t, a, schema.GroupVersionKind{Group: "gone.example.com", Version: "v1", Kind: "Ruin"})
	third, err := a.Apply(ctx, owner, configMap, Options{DefaultNamespace: ns, Prune: true, Previous: second.Inventory})
	if err != nil {
		t.Fatalf("pruning the Ruin whose group is gone: %v", err)
	}
	if len(third.Inventory) != 1 || third.Inventory[0].Kind != "ConfigMap" || len(third.PruneFailed) != 0 {
		t.Errorf("inventory %v, failed %v: want the ConfigMap alone", third.Inventory, third.PruneFailed)
	}
}

// TestPruningReachesAnObjectThroughAnotherVersion: a CRD's upgrade stopped
// serving the version an object was applied at; the object is still there,
// through the version served now, and pruning it deletes it rather than
// forgetting it. a's mapper read discovery while v1beta1 was served (it
// applied the Tool then), so the prune's first GET, of v1beta1, is
// answered with a bare 404 for the path: the mapper older than the upgrade
// that getApplied reads discovery again for.
func TestPruningReachesAnObjectThroughAnotherVersion(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	ctx := context.Background()
	crdOwner := Owner{Namespace: "default", Name: "tool-crd"}
	applyCRD(t, a, crdOwner, crdYAML("tools", "upgraded.example.com", "Tool", "v1beta1"), "upgraded.example.com/v1beta1", "Tool")
	owner := Owner{Namespace: "default", Name: "tools"}
	first, err := a.Apply(ctx, owner, render(t, "tool.yaml", "apiVersion: upgraded.example.com/v1beta1\nkind: Tool\nmetadata:\n  name: hammer\n"),
		Options{DefaultNamespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	upgraded := strings.Replace(crdYAML("tools", "upgraded.example.com", "Tool", "v1"), "  versions:\n",
		"  versions:\n  - {name: v1beta1, served: false, storage: false, schema: {openAPIV3Schema: {type: object}}}\n", 1)
	if _, err := a.Apply(ctx, crdOwner, render(t, "crd.yaml", upgraded), Options{}); err != nil {
		t.Fatal(err)
	}
	tools := schema.GroupVersionResource{Group: "upgraded.example.com", Version: "v1", Resource: "tools"}
	waitUnserved(t, a, schema.GroupVersionKind{Group: "upgraded.example.com", Version: "v1beta1", Kind: "Tool"})
	result, err := a.Apply(ctx, owner, nil, Options{DefaultNamespace: ns, Prune: true, Previous: first.Inventory})
	if err != nil {
		t.Fatalf("pruning the Tool: %v", err)
	}
	if result.Pruned != 1 || len(result.Inventory) != 0 {
		t.Errorf("pruned %d, inventory %v: want the Tool pruned", result.Pruned, result.Inventory)
	}
	if live, err := a.Client.Resource(tools).Namespace(ns).Get(ctx, "hammer", metav1.GetOptions{}); err == nil && live.GetDeletionTimestamp() == nil {
		t.Errorf("the Tool is still there, no longer in the inventory")
	}
}

// TestAnUnavailableAggregatedAPIKeepsItsObjects: a group whose API server
// does not answer looks, to client-go's discovery, like a group not served;
// pruning its objects fails and keeps them in the inventory, to prune
// once it answers, instead of forgetting them.
func TestAnUnavailableAggregatedAPIKeepsItsObjects(t *testing.T) {
	a := newApplier(t)
	ctx := context.Background()
	if _, err := a.Apply(ctx, Owner{Namespace: "default", Name: "broken-api"}, render(t, "apiservice.yaml", `apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1.broken.example.com
spec:
  group: broken.example.com
  version: v1
  service: {namespace: default, name: nobody-serves-this}
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 1000
  versionPriority: 15
`), Options{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error { // the aggregator lists the group, unavailable
		return a.Discovery.RESTClient().Get().AbsPath("/apis/broken.example.com").Do(ctx).Error()
	})
	owner := Owner{Namespace: "default", Name: "broken"}
	var things []Entry
	for _, name := range []string{"a", "b", "c"} {
		things = append(things, Entry{Group: "broken.example.com", Version: "v1", Kind: "Thing", Namespace: "default", Name: name})
	}
	config := rest.CopyConfig(restConfig)
	var asked atomic.Int32 // requests about the broken group
	config.Wrap(func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if strings.HasPrefix(r.URL.Path, "/apis/broken.example.com") {
				asked.Add(1)
			}
			return next.RoundTrip(r)
		})
	})
	result, err := newApplierAs(t, config).Apply(ctx, owner, nil, Options{Prune: true, Previous: things})
	var perr *Error
	if !errors.As(err, &perr) || perr.Reason != ReasonPruneFailed {
		t.Errorf("got %v, want PruneFailed", err)
	}
	if result == nil || len(result.Inventory) != 3 || len(result.PruneFailed) != 3 {
		t.Errorf("result %+v: want the Things kept in the inventory, failed", result)
	}
	if n := asked.Load(); n != 2 {
		t.Errorf("the prune asked about the group %d times, want twice (the group, its version) for all three", n)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

var crdsResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func crdYAML(plural, group, kind, version string) string {
	return `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ` + plural + "." + group + `
spec:
  group: ` + group + `
  names: {kind: ` + kind + `, plural: ` + plural + `}
  scope: Namespaced
  versions:
  - {name: ` + version + `, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}
`
}

// applyCRD applies a CRD and waits until discovery serves kind at
// groupVersion.
func applyCRD(t *testing.T, a *Applier, owner Owner, crd, groupVersion, kind string) {
	t.Helper()
	if _, err := a.Apply(context.Background(), owner, render(t, "crd.yaml", crd), Options{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		resources, err := a.Discovery.ServerResourcesForGroupVersion(groupVersion)
		if err != nil {
			return err
		}
		for _, r := range resources.APIResources {
			if r.Kind == kind {
				return nil
			}
		}
		return errors.New(kind + " not served yet")
	})
}

// waitUnserved waits until discovery, as the appliers' mapper reads it,
// no longer serves gvk (it follows a CRD's change a moment later; a prune
// in that moment keeps the object, to try again).
func waitUnserved(t *testing.T, a *Applier, gvk schema.GroupVersionKind) {
	t.Helper()
	eventually(t, func() error {
		fresh := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(a.Discovery))
		if _, err := fresh.RESTMapping(gvk.GroupKind(), gvk.Version); !meta.IsNoMatchError(err) {
			return fmt.Errorf("%s still served (%v)", gvk, err)
		}
		return nil
	})
}

func deleteAndWait(t *testing.T, a *Applier, resource schema.GroupVersionResource, namespace, name string) {
	t.Helper()
	ctx := context.Background()
	if err := a.Client.Resource(resource).Namespace(namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() error {
		_, err := a.Client.Resource(resource).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			return errors.New(name + " still there")
		}
		return nil
	})
}

func eventually(t *testing.T, check func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
