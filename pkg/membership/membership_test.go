package membership

import (
	"context"
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("team-%d/app-%d", i%97, i)
	}
	return out
}

// TestAFourthReplicaTakesAboutAQuarter: rendezvous hashing spreads 10,000
// GitRepositories evenly, and a joining replica takes about 1/4 of them,
// each from one of the others, none moving between those.
func TestAFourthReplicaTakesAboutAQuarter(t *testing.T) {
	three := []string{"alumiini-0", "alumiini-1", "alumiini-2"}
	four := append(three[:3:3], "alumiini-3")
	all := keys(10000)
	share := map[string]int{}
	moved := 0
	for _, k := range all {
		before, after := Owner(k, three), Owner(k, four)
		share[before]++
		if before != after {
			moved++
			if after != "alumiini-3" {
				t.Fatalf("%s moved from %s to %s, not to the new replica", k, before, after)
			}
		}
	}
	t.Logf("3 replicas: %v; adding a 4th moved %d of %d (%.1f%%)", share, moved, len(all), 100*float64(moved)/float64(len(all)))
	for name, n := range share {
		if n < 3000 || n > 3700 {
			t.Errorf("%s owns %d of 10,000; want about a third", name, n)
		}
	}
	if moved < 2200 || moved > 2800 {
		t.Errorf("adding a 4th replica moved %d of 10,000; want about a quarter", moved)
	}
	// The replica leaving again gives back exactly what it took.
	for _, k := range all {
		if Owner(k, four) != "alumiini-3" && Owner(k, three) != Owner(k, four) {
			t.Fatalf("%s moved though its owner stayed", k)
		}
	}
	if Owner("a/b", nil) != "" {
		t.Error("no replicas, yet an owner")
	}
}

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func lease(name, holder string, renewed time.Time) *coordinationv1.Lease {
	t := metav1.NewMicroTime(renewed)
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: LeasePrefix + name},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, RenewTime: &t}}
}

// TestLivenessFollowsRenewalsSeenHere: a Lease is live while this process
// sees it renewed; an identity that lost its Lease is dead at once; one
// never seen is given a lease duration before it counts as dead.
func TestLivenessFollowsRenewalsSeenHere(t *testing.T) {
	c := &clock{now: time.Unix(1000, 0)}
	v := NewView(fake.NewClientset(), "alumiini-system", 15*time.Second)
	v.now = c.Now
	changes := 0
	v.onChange = func() { changes++ }
	// A renewTime far in the past by the writer's clock counts as renewed
	// now: only what this process sees matters.
	v.saw(lease("a", "a_1", time.Unix(0, 0)))
	v.saw(lease("b", "b_1", time.Unix(0, 0)))
	if got := v.Live(); len(got) != 2 || got[0] != (Member{"a", "a_1"}) || changes != 2 {
		t.Fatalf("live %v after %d changes", got, changes)
	}
	c.now = c.now.Add(10 * time.Second)
	v.saw(lease("a", "a_1", time.Unix(10, 0))) // a renews, b does not
	c.now = c.now.Add(6 * time.Second)
	v.recompute()
	if got := v.Live(); len(got) != 1 || got[0].Name != "a" {
		t.Errorf("b unrenewed for 16s, still live: %v", got)
	}
	if !v.Alive("a_1") || v.Alive("b_1") {
		t.Errorf("alive: a_1 %v, b_1 %v; want true, false", v.Alive("a_1"), v.Alive("b_1"))
	}
	// a restarts: a new process takes its Lease; the old one is dead at once.
	v.saw(lease("a", "a_2", time.Unix(20, 0)))
	if v.Alive("a_1") || !v.Alive("a_2") {
		t.Errorf("after a's restart: a_1 alive %v, a_2 alive %v", v.Alive("a_1"), v.Alive("a_2"))
	}
	// An owner named before its Lease reached this watch.
	if !v.Alive("c_1") {
		t.Error("an identity first heard of now is judged dead at once")
	}
	c.now = c.now.Add(16 * time.Second)
	if v.Alive("c_1") {
		t.Error("an identity no Lease showed for a lease duration is still alive")
	}
	v.forget(LeasePrefix + "a")
	if v.Alive("a_2") || len(v.Live()) != 0 {
		t.Errorf("a's Lease deleted: a_2 alive %v, live %v", v.Alive("a_2"), v.Live())
	}
}

// TestALaggingWatchDoesNotMakeAnOwnerDead: the watch last showed b's Lease
// a lease duration ago, but kube-apiserver has it renewed since: asked
// before a claim, RenewedSince reads it and b is alive.
func TestALaggingWatchDoesNotMakeAnOwnerDead(t *testing.T) {
	c := &clock{now: time.Unix(1000, 0)}
	stored := lease("b", "b_1", time.Unix(1000, 0))
	client := fake.NewClientset()
	v := NewView(client, "alumiini-system", 15*time.Second)
	v.now = c.Now
	v.saw(stored)
	c.now = c.now.Add(16 * time.Second)
	if v.Alive("b_1") {
		t.Fatal("b unrenewed for 16s by the watch, yet alive")
	}
	renewed := lease("b", "b_1", time.Unix(1015, 0))
	renewed.Namespace = "alumiini-system"
	if _, err := client.CoordinationV1().Leases("alumiini-system").Create(context.Background(), renewed, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !v.RenewedSince(context.Background(), "b_1") {
		t.Error("b renewed its Lease (the watch had not shown it), yet judged dead")
	}
	c.now = c.now.Add(16 * time.Second)
	if v.RenewedSince(context.Background(), "b_1") {
		t.Error("b's Lease unchanged for another lease duration, yet alive")
	}
	if v.RenewedSince(context.Background(), "gone_1") {
		t.Error("an identity whose Lease does not exist is alive")
	}
}
