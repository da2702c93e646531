// Package slots bounds work running at once, overall and per tenant, so that
// one tenant's slow work cannot hold every slot while other tenants wait.
package slots

import (
	"context"
	"sync"
)

// Slots bound concurrent work overall and per tenant (a namespace).
type Slots struct {
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

// New returns Slots for global pieces of work at once, at most perTenant of
// them one tenant's (at least 1, at most global).
func New(global, perTenant int) *Slots {
	perTenant = min(max(perTenant, 1), global)
	return &Slots{global: make(chan struct{}, global), perTenant: perTenant, tenants: map[string]*tenantSlots{}}
}

// Acquire waits for a slot of tenant's and then a global one. Taking the
// tenant's first means a tenant's queued work never sits on global slots.
func (s *Slots) Acquire(ctx context.Context, tenant string) (release func(), err error) {
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

func (s *Slots) join(tenant string) *tenantSlots {
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

func (s *Slots) leave(tenant string, ts *tenantSlots) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts.users--
	if ts.users == 0 {
		delete(s.tenants, tenant)
	}
}
