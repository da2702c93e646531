package controller

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubefake "k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	fake "github.com/falsesystems/alumiini/pkg/generated/clientset/versioned/fake"
	listers "github.com/falsesystems/alumiini/pkg/generated/listers/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/membership"
)

// These use client-go's fake clientsets; test/install runs ownership for
// real (three replicas, SIGKILL and restart).

func replicaLease(name, holder string) *coordinationv1.Lease {
	now := metav1.NewMicroTime(time.Now())
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: membership.LeasePrefix + name, Namespace: "ns"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, RenewTime: &now}}
}

// twoReplicas: live replicas a and b, and a GitRepository that hashing
// gives to one of them while status.owner names a's process, a_1.
type twoReplicas struct {
	view      *membership.View
	name, key string
	repo      *v1alpha1.GitRepository
	client    *fake.Clientset
	index     cache.Indexer
}

func newTwoReplicas(ctx context.Context, t *testing.T, hashedTo string) twoReplicas {
	t.Helper()
	f := twoReplicas{view: membership.NewView(kubefake.NewClientset(replicaLease("a", "a_1"), replicaLease("b", "b_1")), "ns", 15*time.Second)}
	go f.view.Run(ctx, nil)
	for len(f.view.Live()) < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; f.name == ""; i++ {
		if candidate := fmt.Sprintf("app-%d", i); f.view.OwnerOf("team/"+candidate) == hashedTo {
			f.name = candidate
		}
	}
	f.key = "team/" + f.name
	f.repo = &v1alpha1.GitRepository{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: f.name, ResourceVersion: "1"},
		Status: v1alpha1.GitRepositoryStatus{Owner: "a_1"}}
	f.client = fake.NewSimpleClientset(f.repo)
	f.index = cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	_ = f.index.Add(f.repo.DeepCopy())
	return f
}

// TestAWorkerStopsWhenAnotherReplicaClaims: replica a stalled, b claimed a
// GitRepository of a's in the meantime. Once a sees that, its worker stops
// (it neither syncs another's GitRepository nor sleeps on it); when the
// GitRepository is a's again, a new worker syncs it at once.
func TestAWorkerStopsWhenAnotherReplicaClaims(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newTwoReplicas(ctx, t, "a")
	view, name, key, repo, client, index := f.view, f.name, f.key, f.repo, f.client, f.index
	var syncs atomic.Int32
	supervisor := NewSupervisor(ctx, func(context.Context, string) time.Duration {
		syncs.Add(1)
		return time.Hour
	}, SupervisorOptions{})
	o := newOwnership(Share{View: view, Name: "a", Identity: "a_1", Recheck: time.Second}, client,
		listers.NewGitRepositoryLister(index), supervisor)

	if _, err := o.settle(ctx, key); err != nil || !supervisor.Has(key) {
		t.Fatalf("a owns it: worker %v, %v", supervisor.Has(key), err)
	}
	claimed := repo.DeepCopy()
	claimed.Status.Owner = "b_1"
	_ = index.Update(claimed)
	if again, err := o.settle(ctx, key); err != nil || !again {
		t.Fatalf("b owns it, alive: settle again %v, %v; want to look again later", again, err)
	}
	if supervisor.Busy(key) {
		t.Fatal("a keeps a worker for a GitRepository b owns")
	}

	back := repo.DeepCopy() // b released it; a claims it
	back.Status.Owner = ""
	_ = index.Update(back)
	if _, err := o.settle(ctx, key); err != nil {
		t.Fatal(err)
	}
	stored, err := client.AlumiiniV1alpha1().GitRepositories("team").Get(ctx, name, metav1.GetOptions{})
	if err != nil || stored.Status.Owner != "a_1" {
		t.Fatalf("a did not claim it back: %v %v", stored.Status.Owner, err)
	}
	_ = index.Update(stored)
	before := syncs.Load()
	if _, err := o.settle(ctx, key); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); syncs.Load() == before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a owns it again, but no worker synced it")
		}
	}
}

// TestAReleaseWaitsForTheSyncInHand: a replica that should no longer own a
// GitRepository clears status.owner only after its worker has returned,
// and the ownership goroutine is not held meanwhile.
func TestAReleaseWaitsForTheSyncInHand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := newTwoReplicas(ctx, t, "b")
	view, name, key, client, index := f.view, f.name, f.key, f.client, f.index
	inSync, finish := make(chan struct{}), make(chan struct{})
	supervisor := NewSupervisor(ctx, func(context.Context, string) time.Duration {
		close(inSync)
		<-finish // a long sync, not cancelled by the hand-over
		return time.Hour
	}, SupervisorOptions{})
	o := newOwnership(Share{View: view, Name: "a", Identity: "a_1", Recheck: time.Second}, client,
		listers.NewGitRepositoryLister(index), supervisor)
	go o.run(ctx)
	supervisor.Ensure(key)
	<-inSync
	o.queue.Add(key) // hashing gives it to b now

	time.Sleep(200 * time.Millisecond)
	stored, _ := client.AlumiiniV1alpha1().GitRepositories("team").Get(ctx, name, metav1.GetOptions{})
	if stored.Status.Owner != "a_1" {
		t.Fatal("released while the sync in hand still ran")
	}
	close(finish)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		stored, _ = client.AlumiiniV1alpha1().GitRepositories("team").Get(ctx, name, metav1.GetOptions{})
		if stored.Status.Owner == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not released after the sync in hand returned")
		}
	}
}
