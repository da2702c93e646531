package controller

import (
	"testing"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
)

// TestARequestJoinedDuringItsSyncIsHandledAgain: a request (or a push
// another replica handed over) that joins the pending one after its sync
// began (the flag beginRequest cleared is set again) keeps it pending, and
// wakes the worker; without a join the sync answers it.
func TestARequestJoinedDuringItsSyncIsHandledAgain(t *testing.T) {
	handled := &v1alpha1.SyncRequestRecord{ID: "a"}
	for _, rejoined := range []bool{false, true} {
		s := &v1alpha1.GitRepositoryStatus{PendingSyncRequest: &v1alpha1.SyncRequestRecord{ID: "a", Rejoined: rejoined}}
		answer(s, handled, v1alpha1.PhaseSynced, "c0ffee", "applied", v1alpha1.ObjectCounts{}, 0)
		if pending := s.PendingSyncRequest != nil; pending != rejoined {
			t.Errorf("rejoined %v: pending after the answer %v, want %v", rejoined, pending, rejoined)
		}
		if !rejoined && (s.LastSyncRequest == nil || s.LastSyncRequest.Result.Commit != "c0ffee") {
			t.Errorf("the request was not answered: %+v", s.LastSyncRequest)
		}
	}
	old := &v1alpha1.GitRepository{Status: v1alpha1.GitRepositoryStatus{PendingSyncRequest: &v1alpha1.SyncRequestRecord{ID: "a"}}}
	joined := old.DeepCopy()
	joined.Status.PendingSyncRequest.Rejoined = true
	if !newRequest(old, joined) {
		t.Error("a join does not wake the worker")
	}
	if newRequest(joined, old) || newRequest(joined, joined) {
		t.Error("clearing the flag, or nothing, wakes the worker")
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
