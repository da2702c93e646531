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

// elector returns the controller's Config.Elect for --leader-elect: it
// campaigns for the Lease in the target cluster, runs lead while it holds
// it, and campaigns again after losing it, once lead has returned (its
// workers stopped), until ctx ends.
func elector(le componentbaseconfig.LeaderElectionConfiguration, target *rest.Config) (func(context.Context, func(context.Context)), error) {
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("naming this replica for leader election: %w", err)
	}
	identity := host + "_" + string(uuid.NewUUID())
	lock, err := resourcelock.NewFromKubeconfig(le.ResourceLock, le.ResourceNamespace, le.ResourceName,
		resourcelock.ResourceLockConfig{Identity: identity}, rest.CopyConfig(target), le.RenewDeadline.Duration)
	if err != nil {
		return nil, fmt.Errorf("the leader election lock %s/%s: %w", le.ResourceNamespace, le.ResourceName, err)
	}
	c := campaigner{config: le, lock: lock, identity: identity}
	return func(ctx context.Context, lead func(context.Context)) {
		for ctx.Err() == nil {
			if err := c.campaign(ctx, lead); err != nil {
				klog.ErrorS(err, "Leader election")
				return
			}
		}
	}, nil
}

type campaigner struct {
	config   componentbaseconfig.LeaderElectionConfiguration
	lock     resourcelock.Interface
	identity string
}

// campaign waits for the Lease, runs lead while holding it, and returns
// once lead has returned. The Lease is released (ReleaseOnCancel) only after
// lead returned, so on a shutdown the next leader starts no worker before
// this one's have stopped; a lost Lease stops them RenewDeadline after the
// last renewal, before another replica may take it at LeaseDuration.
func (c campaigner) campaign(ctx context.Context, lead func(context.Context)) error {
	electing, stopElecting := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElecting()
	var leading atomic.Bool
	led := make(chan struct{})
	stopOnShutdown := context.AfterFunc(ctx, func() {
		if !leading.Load() {
			stopElecting()
		}
	})
	defer stopOnShutdown()
	lease := klog.KRef(c.config.ResourceNamespace, c.config.ResourceName)
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            c.lock,
		Name:            c.config.ResourceName,
		LeaseDuration:   c.config.LeaseDuration.Duration,
		RenewDeadline:   c.config.RenewDeadline.Duration,
		RetryPeriod:     c.config.RetryPeriod.Duration,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(term context.Context) {
				leading.Store(true)
				defer close(led)
				defer stopElecting()
				leadCtx, cancel := context.WithCancel(term)
				defer cancel()
				defer context.AfterFunc(ctx, cancel)()
				klog.InfoS("Leading: this replica runs the workers", "lease", lease, "identity", c.identity)
				lead(leadCtx)
			},
			OnStoppedLeading: func() { klog.InfoS("Not leading", "lease", lease, "identity", c.identity) },
		},
	})
	if err != nil {
		return err
	}
	elector.Run(electing)
	if leading.Load() {
		<-led
	}
	return nil
}
