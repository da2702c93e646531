package controller

import (
	"testing"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
)

// TestARequestJoinedDuringItsSyncIsHandledAgain: a request (or a push
// another replica handed over) that joins the pending one after its sync
// began keeps it pending, so the worker, woken by the join, lists again;
// without a join the sync answers it.
func TestARequestJoinedDuringItsSyncIsHandledAgain(t *testing.T) {
	handled := &v1alpha1.SyncRequestRecord{ID: "a"}
	for _, c := range []struct {
		joins       int32
		wantPending bool
	}{{0, false}, {1, true}} {
		s := &v1alpha1.GitRepositoryStatus{PendingSyncRequest: &v1alpha1.SyncRequestRecord{ID: "a", Joins: c.joins}}
		answer(s, handled, v1alpha1.PhaseSynced, "c0ffee", "applied", v1alpha1.ObjectCounts{}, 0)
		if pending := s.PendingSyncRequest != nil; pending != c.wantPending {
			t.Errorf("joins %d: pending after the answer %v, want %v", c.joins, pending, c.wantPending)
		}
		if !c.wantPending && (s.LastSyncRequest == nil || s.LastSyncRequest.Result.Commit != "c0ffee") {
			t.Errorf("joins %d: the request was not answered: %+v", c.joins, s.LastSyncRequest)
		}
	}
	old := &v1alpha1.GitRepository{Status: v1alpha1.GitRepositoryStatus{PendingSyncRequest: &v1alpha1.SyncRequestRecord{ID: "a"}}}
	joined := old.DeepCopy()
	joined.Status.PendingSyncRequest.Joins = 1
	if !newRequest(old, joined) {
		t.Error("a join does not wake the worker")
	}
	if newRequest(joined, joined) {
		t.Error("an unchanged request wakes the worker")
	}
}

// TestOnlyAlumiiniHandsOverPushes: a request counts as a handed-over push
// (a listing, no apply when nothing is new) only when alumiini's own
// loopback identity recorded it without revision or force.
func TestOnlyAlumiiniHandsOverPushes(t *testing.T) {
	for _, c := range []struct {
		record v1alpha1.SyncRequestRecord
		want   bool
	}{
		{v1alpha1.SyncRequestRecord{RequestedBy: "system:apiserver"}, true},
		{v1alpha1.SyncRequestRecord{RequestedBy: "alice"}, false},
		{v1alpha1.SyncRequestRecord{RequestedBy: "system:apiserver", Force: true}, false},
		{v1alpha1.SyncRequestRecord{RequestedBy: "system:apiserver", Revision: "main"}, false},
	} {
		if got := handedOverPush(&c.record); got != c.want {
			t.Errorf("%+v: %v, want %v", c.record, got, c.want)
		}
	}
}
