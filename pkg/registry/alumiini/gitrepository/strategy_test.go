package gitrepository

import (
	"context"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini"
)

func repo() *alumiini.GitRepository {
	return &alumiini.GitRepository{
		ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "default", Generation: 3, ResourceVersion: "7"},
		Spec: alumiini.GitRepositorySpec{URL: "https://example.com/r.git", Branch: "main",
			Interval: "5m", Timeout: "1m", Prune: ptr.To(true)},
		Status: alumiini.GitRepositoryStatus{Phase: alumiini.PhaseSynced, LastSyncedCommit: "0123456789abcdef0123456789abcdef01234567"},
	}
}

func TestPrepareForCreateClearsStatus(t *testing.T) {
	s := NewStrategy(runtime.NewScheme())
	r := repo()
	s.PrepareForCreate(context.Background(), r)
	if r.Status.Phase != alumiini.PhasePending || r.Status.LastSyncedCommit != "" || r.Generation != 1 {
		t.Fatalf("after create: status %+v generation %d", r.Status, r.Generation)
	}
	// kstatus reads a GitRepository without conditions as current; a new
	// one is in progress (pkg/controller TestKstatusReadsEveryState).
	if len(r.Status.Conditions) != 1 || r.Status.Conditions[0].Type != alumiini.ConditionReconciling ||
		r.Status.Conditions[0].Status != "True" {
		t.Errorf("a new GitRepository's conditions: %+v", r.Status.Conditions)
	}
}

func TestPrepareForUpdate(t *testing.T) {
	cases := []struct {
		name           string
		mutate         func(*alumiini.GitRepository)
		wantGeneration int64
		wantBranch     string
	}{
		{name: "spec change bumps generation", mutate: func(r *alumiini.GitRepository) { r.Spec.Path = "apps" }, wantGeneration: 4, wantBranch: "main"},
		{name: "label change keeps generation", mutate: func(r *alumiini.GitRepository) { r.Labels = map[string]string{"a": "b"} }, wantGeneration: 3, wantBranch: "main"},
		{name: "status change is dropped", mutate: func(r *alumiini.GitRepository) { r.Status.Phase = alumiini.PhaseFailed }, wantGeneration: 3, wantBranch: "main"},
		{name: "pinning a tag drops the leftover branch", mutate: func(r *alumiini.GitRepository) { r.Spec.Tag = "v1" }, wantGeneration: 4, wantBranch: ""},
		{name: "pinning a tag with a new branch keeps it for validation", mutate: func(r *alumiini.GitRepository) {
			r.Spec.Tag, r.Spec.Branch = "v1", "dev"
		}, wantGeneration: 4, wantBranch: "dev"},
	}
	s := NewStrategy(runtime.NewScheme())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old := repo()
			updated := old.DeepCopy()
			tc.mutate(updated)
			s.PrepareForUpdate(context.Background(), updated, old)
			if updated.Generation != tc.wantGeneration {
				t.Errorf("generation %d, want %d", updated.Generation, tc.wantGeneration)
			}
			if updated.Status.Phase != alumiini.PhaseSynced {
				t.Errorf("status not kept: %+v", updated.Status)
			}
			if updated.Spec.Branch != tc.wantBranch {
				t.Errorf("branch %q, want %q", updated.Spec.Branch, tc.wantBranch)
			}
		})
	}
}

func TestStatusStrategyChangesOnlyStatus(t *testing.T) {
	s := NewStatusStrategy(NewStrategy(runtime.NewScheme()))
	old := repo()
	updated := old.DeepCopy()
	updated.Spec.Path = "elsewhere"
	updated.Labels = map[string]string{"sneaky": "yes"}
	updated.Finalizers = []string{"x"}
	updated.Status.Phase = alumiini.PhaseFailed
	s.PrepareForUpdate(context.Background(), updated, old)
	if updated.Spec.Path != "" || updated.Labels != nil || updated.Finalizers != nil {
		t.Errorf("status write changed spec or metadata: %+v %v %v", updated.Spec, updated.Labels, updated.Finalizers)
	}
	if updated.Status.Phase != alumiini.PhaseFailed || updated.Generation != 3 {
		t.Errorf("status write: phase %q generation %d", updated.Status.Phase, updated.Generation)
	}
}

func TestTableConvertor(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	c := TableConvertor{now: func() time.Time { return now }}
	synced := repo()
	synced.CreationTimestamp = metav1.NewTime(now.Add(-3 * time.Hour))
	synced.Status.LastSyncTime = ptr.To(metav1.NewTime(now.Add(-90 * time.Second)))
	pinned := repo()
	pinned.Name = "pinned"
	pinned.CreationTimestamp = metav1.NewTime(now.Add(-2 * 24 * time.Hour))
	pinned.Spec.Branch, pinned.Spec.Tag = "", "v1.2.0"
	pinned.Status = alumiini.GitRepositoryStatus{}
	list := &alumiini.GitRepositoryList{ListMeta: metav1.ListMeta{ResourceVersion: "42"}, Items: []alumiini.GitRepository{*synced, *pinned}}

	table, err := c.ConvertToTable(context.Background(), list, nil)
	if err != nil {
		t.Fatal(err)
	}
	var header []string
	for _, col := range table.ColumnDefinitions {
		if col.Priority == 0 {
			header = append(header, col.Name)
		}
	}
	wantHeader := []string{"Name", "URL", "Branch", "Commit", "Phase", "Last Sync", "Age"}
	if !slices.Equal(header, wantHeader) {
		t.Errorf("columns %v, want %v", header, wantHeader)
	}
	want := [][]interface{}{
		{"demo", "https://example.com/r.git", "main", "0123456", "Synced", "90s", "3h"},
		{"pinned", "https://example.com/r.git", "tag:v1.2.0", "", "", "<none>", "2d"},
	}
	for i, row := range table.Rows {
		for j, cell := range want[i] {
			if row.Cells[j] != cell {
				t.Errorf("row %d column %s = %v, want %v", i, wantHeader[j], row.Cells[j], cell)
			}
		}
	}
	if table.ResourceVersion != "42" {
		t.Errorf("resourceVersion %q, want 42", table.ResourceVersion)
	}

	noHeaders, err := c.ConvertToTable(context.Background(), synced, &metav1.TableOptions{NoHeaders: true})
	if err != nil || len(noHeaders.ColumnDefinitions) != 0 || len(noHeaders.Rows) != 1 {
		t.Errorf("single object without headers: %v %+v", err, noHeaders)
	}
}

func TestPruneFinalizerAtCreate(t *testing.T) {
	s := NewStrategy(runtime.NewScheme())
	s.PruneFinalizer = "alumiini.false.systems/prune"
	pruning, keeping := repo(), repo()
	keeping.Spec.Prune = ptr.To(false)
	s.PrepareForCreate(context.Background(), pruning)
	s.PrepareForCreate(context.Background(), keeping)
	if !slices.Contains(pruning.Finalizers, s.PruneFinalizer) || len(keeping.Finalizers) != 0 {
		t.Errorf("finalizers: pruning %v, keeping %v", pruning.Finalizers, keeping.Finalizers)
	}
	plain := NewStrategy(runtime.NewScheme())
	r := repo()
	plain.PrepareForCreate(context.Background(), r)
	if len(r.Finalizers) != 0 {
		t.Errorf("a server without a controller added %v", r.Finalizers)
	}
}
