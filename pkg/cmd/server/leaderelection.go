package server

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	componentbaseconfig "k8s.io/component-base/config"
	"k8s.io/klog/v2"
)

// newLeaderElection is off by default: one replica over the embedded etcd
// has no one to share with. Replicas over an external etcd turn it on, so
// that every replica serves the API and exactly one runs the workers.
func newLeaderElection() componentbaseconfig.LeaderElectionConfiguration {
	return componentbaseconfig.LeaderElectionConfiguration{
		LeaderElect:       false,
		LeaseDuration:     metav1.Duration{Duration: 15 * time.Second},
		RenewDeadline:     metav1.Duration{Duration: 10 * time.Second},
		RetryPeriod:       metav1.Duration{Duration: 2 * time.Second},
		ResourceLock:      resourcelock.LeasesResourceLock,
		ResourceName:      "alumiini-controller",
		ResourceNamespace: "alumiini-system",
	}
}

// elector returns the controller's Config.Elect for --leader-elect (and,
// on a Lease of its own, for --share-work): it campaigns for the Lease in
// the target cluster, runs lead while it holds it, and campaigns again after
// losing it, once lead has returned (its workers stopped), until ctx ends.
// The identity is name (the host name if empty) and a per-process id.
func elector(le componentbaseconfig.LeaderElectionConfiguration, name string, target *rest.Config) (func(context.Context, func(context.Context) error) error, string, error) {
	if name == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, "", fmt.Errorf("naming this replica for leader election: %w", err)
		}
		name = host
	}
	identity := name + "_" + string(uuid.NewUUID())
	lock, err := resourcelock.NewFromKubeconfig(le.ResourceLock, le.ResourceNamespace, le.ResourceName,
		resourcelock.ResourceLockConfig{Identity: identity}, rest.CopyConfig(target), le.RenewDeadline.Duration)
	if err != nil {
		return nil, "", fmt.Errorf("the leader election lock %s/%s: %w", le.ResourceNamespace, le.ResourceName, err)
	}
	c := campaigner{config: le, lock: lock, identity: identity}
	return func(ctx context.Context, lead func(context.Context) error) error {
		for ctx.Err() == nil {
			if err := c.campaign(ctx, lead); err != nil {
				return err
			}
		}
		return nil
	}, identity, nil
}

type campaigner struct {
	config   componentbaseconfig.LeaderElectionConfiguration
	lock     resourcelock.Interface
	identity string
}

// campaign waits for the Lease, runs lead while holding it, and returns
// once lead has returned. client-go's own release (ReleaseOnCancel) would
// give the Lease up the moment renewing stops, while lead's workers may
// still be stopping, so it is off: a lost Lease cancels lead at most
// RenewDeadline+RetryPeriod (12 s) after the last renewal, and another
// replica may take it only LeaseDuration (15 s) after it saw that renewal.
// Once lead has returned (on shutdown, or failing), release hands the Lease
// over.
func (c campaigner) campaign(ctx context.Context, lead func(context.Context) error) error {
	// Stopped when lead returns, so that a failed lead does not keep renewing
	// a Lease it does nothing with.
	electing, stopElecting := context.WithCancel(ctx)
	defer stopElecting()
	var leading atomic.Bool
	var leadErr error
	led := make(chan struct{})
	lease := klog.KRef(c.config.ResourceNamespace, c.config.ResourceName)
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:          c.lock,
		Name:          c.config.ResourceName,
		LeaseDuration: c.config.LeaseDuration.Duration,
		RenewDeadline: c.config.RenewDeadline.Duration,
		RetryPeriod:   c.config.RetryPeriod.Duration,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(term context.Context) {
				leading.Store(true)
				defer close(led)
				defer stopElecting()
				klog.InfoS("Leading: this replica runs the workers", "lease", lease, "identity", c.identity)
				leadErr = lead(term)
			},
			OnStoppedLeading: func() { klog.InfoS("Not leading", "lease", lease, "identity", c.identity) },
		},
	})
	if err != nil {
		return err
	}
	elector.Run(electing)
	// client-go starts OnStartedLeading in a goroutine: if ctx ended right
	// after the Lease was won, lead may not have begun yet. It then runs
	// with an ended context and starts no sync, and the Lease expires.
	if !leading.Load() {
		return nil
	}
	<-led
	c.release()
	return leadErr
}

// release gives the Lease up, if this replica still holds it (its workers
// have stopped), so that another replica need not wait for it to expire.
func (c campaigner) release() {
	ctx, cancel := context.WithTimeout(context.Background(), c.config.RenewDeadline.Duration)
	defer cancel()
	record, _, err := c.lock.Get(ctx)
	if err != nil || record.HolderIdentity != c.identity {
		return
	}
	now := metav1.NewTime(time.Now())
	err = c.lock.Update(ctx, resourcelock.LeaderElectionRecord{
		LeaderTransitions: record.LeaderTransitions, LeaseDurationSeconds: 1, RenewTime: now, AcquireTime: now})
	if err != nil {
		klog.ErrorS(err, "Releasing the controller's Lease; it expires by itself", "identity", c.identity)
	}
}
