package gitrepository

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini"
)

// TableConvertor prints GitRepositories for kubectl get.
type TableConvertor struct {
	// now is time.Now; tests fix it.
	now func() time.Time
}

// NewTableConvertor returns the convertor for kubectl get gitrepositories.
func NewTableConvertor() TableConvertor { return TableConvertor{now: time.Now} }

var columns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "Name of the GitRepository."},
	{Name: "URL", Type: "string", Description: "URL of the git repository."},
	{Name: "Branch", Type: "string", Description: "Branch followed, or the pinned tag or commit."},
	{Name: "Commit", Type: "string", Description: "Commit last synced, shortened."},
	{Name: "Phase", Type: "string", Description: "Pending, Syncing, Synced, Failed or Suspended."},
	{Name: "Last Sync", Type: "string", Description: "Time since the last successful sync."},
	{Name: "Age", Type: "string", Description: "Time since the GitRepository was created."},
	{Name: "Message", Type: "string", Priority: 1, Description: "What happened last."},
}

// ConvertToTable turns one GitRepository or a list of them into table rows.
func (c TableConvertor) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{}
	if opts, ok := tableOptions.(*metav1.TableOptions); !ok || !opts.NoHeaders {
		table.ColumnDefinitions = columns
	}
	var repos []*alumiini.GitRepository
	switch obj := object.(type) {
	case *alumiini.GitRepository:
		repos = []*alumiini.GitRepository{obj}
	case *alumiini.GitRepositoryList:
		for i := range obj.Items {
			repos = append(repos, &obj.Items[i])
		}
	default:
		return nil, fmt.Errorf("cannot print a %T as a GitRepository table", object)
	}
	if m, err := meta.ListAccessor(object); err == nil {
		table.ResourceVersion = m.GetResourceVersion()
		table.Continue = m.GetContinue()
		table.RemainingItemCount = m.GetRemainingItemCount()
	} else if m, err := meta.CommonAccessor(object); err == nil {
		table.ResourceVersion = m.GetResourceVersion()
	}
	now := c.now()
	for _, repo := range repos {
		table.Rows = append(table.Rows, metav1.TableRow{
			Cells: []interface{}{
				repo.Name,
				repo.Spec.URL,
				refColumn(&repo.Spec),
				shortCommit(repo.Status.LastSyncedCommit),
				string(repo.Status.Phase),
				since(repo.Status.LastSyncTime, now),
				since(&repo.CreationTimestamp, now),
				repo.Status.Message,
			},
			Object: runtime.RawExtension{Object: repo},
		})
	}
	return table, nil
}

func refColumn(spec *alumiini.GitRepositorySpec) string {
	switch {
	case spec.Tag != "":
		return "tag:" + spec.Tag
	case spec.Commit != "":
		return "commit:" + shortCommit(spec.Commit)
	}
	return spec.Branch
}

func shortCommit(commit string) string {
	if len(commit) > 7 {
		return commit[:7]
	}
	return commit
}

func since(t *metav1.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "<none>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}
