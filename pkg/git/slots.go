package git

import (
	"context"
	"sync"
)

// fetchSlots bound concurrent fetches overall and per tenant, so that one
// tenant's slow servers cannot hold every slot while other tenants wait.
type fetchSlots struct {
	global    chan struct{}
	perTenant int

	mu      sync.Mutex
	tenants map[string]*tenantSlots
}

type tenantSlots struct {
	slots chan struct{}
	// users counts holders and waiters, so an idle tenant's entry goes.
	users int
}

func newFetchSlots(global, perTenant int) *fetchSlots {
	return &fetchSlots{global: make(chan struct{}, global), perTenant: perTenant, tenants: map[string]*tenantSlots{}}
}

// acquire waits for a slot of tenant's and then a global one. Taking the
// tenant's first means a tenant's queued fetches never sit on global slots.
func (s *fetchSlots) acquire(ctx context.Context, tenant string) (release func(), err error) {
	ts := s.join(tenant)
	select {
	case ts.slots <- struct{}{}:
	case <-ctx.Done():
		s.leave(tenant, ts)
		return nil, ctx.Err()
	}
	select {
	case s.global <- struct{}{}:
	case <-ctx.Done():
		<-ts.slots
		s.leave(tenant, ts)
		return nil, ctx.Err()
	}
	return func() {
		<-s.global
		<-ts.slots
		s.leave(tenant, ts)
	}, nil
}

func (s *fetchSlots) join(tenant string) *tenantSlots {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.tenants[tenant]
	if ts == nil {
		ts = &tenantSlots{slots: make(chan struct{}, s.perTenant)}
		s.tenants[tenant] = ts
	}
	ts.users++
	return ts
}

func (s *fetchSlots) leave(tenant string, ts *tenantSlots) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts.users--
	if ts.users == 0 {
		delete(s.tenants, tenant)
	}
}
