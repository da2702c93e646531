package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	metadatafake "k8s.io/client-go/metadata/fake"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/apply"
	"github.com/falsesystems/alumiini/pkg/drift"
)

// staleMapper is a discovery mapper that read discovery before alumiini's
// own group was served: it knows GitRepository only once asked to read
// discovery again.
type staleMapper struct {
	meta.RESTMapper
	read   bool
	resets int
}

func (m *staleMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	if !m.read {
		return nil, &meta.NoKindMatchError{GroupKind: gk, SearchedVersions: versions}
	}
	return m.RESTMapper.RESTMapping(gk, versions...)
}

func (m *staleMapper) Reset() { m.read, m.resets = true, m.resets+1 }

type oneApplier struct{ applier *apply.Applier }

func (o oneApplier) For(string, string) (*apply.Applier, error) { return o.applier, nil }

// TestAHealthWaitFindsAKindDiscoveryMissedAtStart: alumiini read discovery
// before the aggregator saw it available, so its mapper does not know
// GitRepository; a health check naming one reads discovery again instead of
// waiting out healthTimeout on "does not serve" (CI's failure of e2e
// TestWatchesPerRequesterAreCapped). pkg/controller's tests run without
// kube-apiserver: a mapper that read discovery too early stands in for
// discovery (pkg/apply's TestAKindServedAfterDiscoveryWasReadIsFound makes
// one against a real server), and client-go's fake dynamic client for
// kube-apiserver. That client ignores the field selector watching by name,
// so the namespace holds the one object.
func TestAHealthWaitFindsAKindDiscoveryMissedAtStart(t *testing.T) {
	gvk := v1alpha1.SchemeGroupVersion.WithKind("GitRepository")
	known := meta.NewDefaultRESTMapper(nil)
	known.Add(gvk, meta.RESTScopeNamespace)
	other := &unstructured.Unstructured{}
	other.SetGroupVersionKind(gvk)
	other.SetNamespace("team")
	other.SetName("elsewhere")
	resource := v1alpha1.SchemeGroupVersion.WithResource("gitrepositories")
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{resource: "GitRepositoryList"}, other)
	r := &Reconciler{Appliers: oneApplier{&apply.Applier{Client: client, Mapper: &staleMapper{RESTMapper: known}}}}
	repo := &v1alpha1.GitRepository{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "apps"}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	elsewhere := []healthTarget{{gvk: gvk, namespace: "team", name: "elsewhere", byName: true}}
	w := r.waitForHealth(ctx, repo, elsewhere, func(v1alpha1.RolloutStatus, bool) {}, (*apply.Applier).KindMapper)
	if ctx.Err() != nil || len(w.missing) > 0 || len(w.unhealthyNow) > 0 {
		t.Errorf("the wait for a GitRepository: missing %q, unhealthy %q, ended by its deadline: %v; want it healthy at once",
			strings.Join(w.missing, "; "), strings.Join(w.unhealthyNow, "; "), ctx.Err() != nil)
	}

	// A recheck at an idle round (after a restart, say) reads discovery
	// again too, but at most once a minute for all: one naming a kind no one
	// serves would otherwise cost a read per GitRepository per round.
	mapper := &staleMapper{RESTMapper: known}
	r.Appliers = oneApplier{&apply.Applier{Client: client, Mapper: apply.NewSharedMapper(mapper)}}
	if w := r.waitForHealth(ctx, repo, elsewhere, func(v1alpha1.RolloutStatus, bool) {}, (*apply.Applier).IdleKindMapper); len(w.missing) > 0 {
		t.Errorf("a recheck after a restart: %q", strings.Join(w.missing, "; "))
	}
	gone := []healthTarget{{gvk: schema.GroupVersionKind{Group: "gone.example.com", Version: "v1", Kind: "Relic"},
		namespace: "team", name: "r", byName: true}}
	for range 5 {
		quick, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		w := r.waitForHealth(quick, repo, gone, func(v1alpha1.RolloutStatus, bool) {}, (*apply.Applier).IdleKindMapper)
		cancel()
		if !strings.Contains(strings.Join(w.missing, "; "), "does not serve gone.example.com/v1, Kind=Relic") {
			t.Errorf("a recheck naming a kind no one serves: %q", strings.Join(w.missing, "; "))
		}
	}
	if mapper.resets != 1 {
		t.Errorf("discovery was read again %d times by rechecks within a minute, want once", mapper.resets)
	}
}

// TestDriftWatchesFindAKindDiscoveryMissedAtStart: after a restart, a
// GitRepository whose inventory holds GitRepositories, read by a mapper
// that missed alumiini's group, watches them all the same (else their
// drift went unseen until a new commit); an idle check finding a kind
// truly gone reads discovery again at most once a minute.
func TestDriftWatchesFindAKindDiscoveryMissedAtStart(t *testing.T) {
	gvk := v1alpha1.SchemeGroupVersion.WithKind("GitRepository")
	known := meta.NewDefaultRESTMapper(nil)
	known.Add(gvk, meta.RESTScopeNamespace)
	mapper := &staleMapper{RESTMapper: known}
	scheme := metadatafake.NewTestScheme()
	metav1.AddMetaToScheme(scheme)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	book := newDriftBook(drift.NewWatcher(ctx, metadatafake.NewSimpleMetadataClient(scheme), func(drift.Object, drift.Observed) {}),
		apply.NewSharedMapper(mapper))
	child := apply.Entry{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Namespace: "team", Name: "child"}
	book.watch(ctx, []apply.Entry{child})
	if _, _, ok := book.resource(child); !ok || mapper.resets != 1 {
		t.Fatalf("after the watch: mapped %v, discovery read again %d times; want mapped, once", ok, mapper.resets)
	}
	gone := apply.Entry{Group: "gone.example.com", Version: "v1", Kind: "Relic", Namespace: "team", Name: "r"}
	for range 5 {
		book.watch(ctx, []apply.Entry{child, gone})
	}
	if mapper.resets != 1 {
		t.Errorf("idle checks of a kind truly gone read discovery %d times within a minute, want none", mapper.resets-1)
	}
}
