package slots

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestOneTenantCannotHoldEverySlot(t *testing.T) {
	s := New(4, 1)
	ctx := context.Background()
	hog, err := s.Acquire(ctx, "team-a")
	if err != nil {
		t.Fatal(err)
	}
	// team-a's second piece of work waits for its own first, not for others.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s.Acquire(short, "team-a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("team-a's second slot: %v, want to wait past its deadline", err)
	}
	for _, tenant := range []string{"team-b", "team-c", "team-d"} {
		release, err := s.Acquire(ctx, tenant)
		if err != nil {
			t.Fatalf("%s while team-a holds its slot: %v", tenant, err)
		}
		defer release()
	}
	hog()
	release, err := s.Acquire(ctx, "team-a")
	if err != nil {
		t.Fatalf("team-a after releasing: %v", err)
	}
	release()
	if len(s.tenants) != 3 {
		t.Errorf("idle tenants are kept: %d entries", len(s.tenants))
	}
}
