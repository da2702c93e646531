package membership

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	coordinationinformers "k8s.io/client-go/informers/coordination/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// LeasePrefix starts the name of each replica's Lease; its name follows.
const LeasePrefix = "alumiini-replica-"

// Member is a live replica: its name, and the identity of the process that
// holds its Lease now.
type Member struct{ Name, Identity string }

// View watches the replicas' Leases and tells who is alive. Liveness is
// judged on this process's clock: a Lease counts as renewed when this
// process sees its renewTime change, so clocks of other machines never
// matter, as in client-go's leader election.
type View struct {
	client        kubernetes.Interface
	namespace     string
	leaseDuration time.Duration
	onChange      func()
	now           func() time.Time
	informer      cache.SharedIndexInformer

	mu     sync.Mutex
	leases map[string]*seenLease // by replica name
	// gone holds identities that held a Lease and lost it (released, taken
	// over after expiry, or deleted): dead at once, by when they went.
	gone map[string]time.Time
	// unknown holds identities named as owners before any Lease showed
	// them, by when first asked about: alive for a lease duration, since
	// their Lease may just not have reached this watch yet.
	unknown map[string]time.Time
	live    []Member
	// asked: what RenewedSince last read of an identity's Lease, and when.
	asked map[string]answer
}

type answer struct {
	at    time.Time
	alive bool
}

type seenLease struct {
	holder  string
	renewed string // renewTime as written, to notice a renewal
	seenAt  time.Time
}

// NewView returns a view of the replicas' Leases in namespace; Run watches them.
func NewView(client kubernetes.Interface, namespace string, leaseDuration time.Duration) *View {
	v := &View{client: client, namespace: namespace, leaseDuration: leaseDuration, now: time.Now,
		leases: map[string]*seenLease{}, gone: map[string]time.Time{}, unknown: map[string]time.Time{},
		asked: map[string]answer{}}
	v.informer = coordinationinformers.NewLeaseInformer(client, namespace, 0, cache.Indexers{})
	_, _ = v.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { v.saw(obj) },
		UpdateFunc: func(_, obj any) { v.saw(obj) },
		DeleteFunc: func(obj any) {
			if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tombstone.Obj
			}
			if lease, ok := obj.(*coordinationv1.Lease); ok {
				v.forget(lease.Name)
			}
		},
	})
	return v
}

// Run watches until ctx ends, notices Leases that stop being renewed, and
// calls onChange (from its own goroutine) whenever the live members change.
func (v *View) Run(ctx context.Context, onChange func()) {
	v.mu.Lock()
	v.onChange = onChange
	v.mu.Unlock()
	go v.informer.RunWithContext(ctx)
	wait.UntilWithContext(ctx, func(context.Context) { v.recompute() }, v.leaseDuration/8)
}

// HasSynced reports whether the Leases have been listed.
func (v *View) HasSynced() bool { return v.informer.HasSynced() }

// Live returns the live members, sorted by name.
func (v *View) Live() []Member {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.live)
}

// OwnerOf is the name of the live member that owns key, or "".
func (v *View) OwnerOf(key string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	names := make([]string, len(v.live))
	for i, m := range v.live {
		names[i] = m.Name
	}
	return Owner(key, names)
}

// Alive reports whether the process identity may still be running workers:
// it holds a Lease seen renewed within the lease duration, or it was never
// seen in a Lease and was first asked about less than a lease duration ago.
func (v *View) Alive(identity string) bool {
	if identity == "" {
		return false
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	for _, l := range v.leases {
		if l.holder == identity {
			return now.Sub(l.seenAt) < v.leaseDuration
		}
	}
	if _, ok := v.gone[identity]; ok {
		return false
	}
	first, ok := v.unknown[identity]
	if !ok {
		v.unknown[identity] = now
		return true
	}
	return now.Sub(first) < v.leaseDuration
}

// RenewedSince reads identity's Lease from kube-apiserver, past the watch,
// and reports whether it is alive after all: renewed since the watch last
// showed it (the watch lags) or still held by a process never seen dead.
// A replica asks before it claims a dead owner's GitRepository, so a slow
// watch alone never makes a live owner look dead. It reads each identity's
// Lease at most once a second and answers as that read did in between;
// when the read fails it answers true (cannot tell: claim later).
func (v *View) RenewedSince(ctx context.Context, identity string) bool {
	if identity == "" {
		return false
	}
	v.mu.Lock()
	last, ok := v.asked[identity]
	v.mu.Unlock()
	if ok && v.now().Sub(last.at) < time.Second {
		return last.alive
	}
	name, _, _ := strings.Cut(identity, "_")
	lease, err := v.client.CoordinationV1().Leases(v.namespace).Get(ctx, LeasePrefix+name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		v.forget(LeasePrefix + name)
		v.mu.Lock()
		v.gone[identity] = v.now() // no Lease holds it
		v.mu.Unlock()
	case err != nil:
		return true // cannot tell: claim later
	default:
		v.saw(lease)
	}
	alive := v.Alive(identity)
	v.mu.Lock()
	v.asked[identity] = answer{at: v.now(), alive: alive}
	v.mu.Unlock()
	return alive
}

func (v *View) saw(obj any) {
	lease, ok := obj.(*coordinationv1.Lease)
	if !ok || !strings.HasPrefix(lease.Name, LeasePrefix) {
		return
	}
	name := strings.TrimPrefix(lease.Name, LeasePrefix)
	holder, renewed := "", ""
	if lease.Spec.HolderIdentity != nil {
		holder = *lease.Spec.HolderIdentity
	}
	if lease.Spec.RenewTime != nil {
		renewed = lease.Spec.RenewTime.String()
	}
	v.mu.Lock()
	l, ok := v.leases[name]
	if !ok {
		l = &seenLease{}
		v.leases[name] = l
	}
	if l.holder != holder && l.holder != "" {
		// The elector takes a Lease only once it expired or was released,
		// and ours releases only after its workers returned.
		v.gone[l.holder] = v.now()
	}
	if l.holder != holder || l.renewed != renewed {
		l.holder, l.renewed, l.seenAt = holder, renewed, v.now()
	}
	delete(v.unknown, holder)
	v.mu.Unlock()
	v.recompute()
}

func (v *View) forget(leaseName string) {
	name := strings.TrimPrefix(leaseName, LeasePrefix)
	v.mu.Lock()
	if l, ok := v.leases[name]; ok {
		if l.holder != "" {
			v.gone[l.holder] = v.now()
		}
		delete(v.leases, name)
	}
	v.mu.Unlock()
	v.recompute()
}

// recompute refreshes the live members, tells onChange if they changed,
// and forgets identities no status should still name.
func (v *View) recompute() {
	v.mu.Lock()
	now := v.now()
	var live []Member
	for name, l := range v.leases {
		if l.holder != "" && now.Sub(l.seenAt) < v.leaseDuration {
			live = append(live, Member{Name: name, Identity: l.holder})
		}
	}
	slices.SortFunc(live, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	changed := !slices.Equal(live, v.live)
	v.live = live
	// A dead owner is replaced by a live one within a lease duration or
	// two; one still named after ten is treated as unknown (alive for one
	// more lease duration, then dead), which is safe, and keeps these small.
	for id, at := range v.gone {
		if now.Sub(at) > 10*v.leaseDuration {
			delete(v.gone, id)
		}
	}
	for id, at := range v.unknown {
		if now.Sub(at) > 10*v.leaseDuration {
			delete(v.unknown, id)
		}
	}
	for id, last := range v.asked {
		if now.Sub(last.at) > time.Minute {
			delete(v.asked, id)
		}
	}
	onChange := v.onChange
	v.mu.Unlock()
	if changed && onChange != nil {
		onChange()
	}
}
