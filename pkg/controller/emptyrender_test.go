package controller

import (
	"strings"
	"testing"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/git"
	"github.com/falsesystems/alumiini/pkg/manifest"
)

// TestAnEmptyRenderIsRefusedUnlessMarked: rendering nothing while objects
// are applied and pruning is on fails, naming the marker to commit; with
// the marker, without pruning, or with nothing applied yet it is fine.
func TestAnEmptyRenderIsRefusedUnlessMarked(t *testing.T) {
	off := false
	applied := &v1alpha1.Inventory{Entries: []v1alpha1.InventoryEntry{{Version: "v1", Kind: "ConfigMap", Namespace: "a", Name: "b"}}}
	for _, c := range []struct {
		name    string
		spec    v1alpha1.GitRepositorySpec
		inv     *v1alpha1.Inventory
		files   []git.File
		objects []manifest.Object
		refused bool
	}{
		{name: "emptied", spec: v1alpha1.GitRepositorySpec{Path: "deploy"}, inv: applied, refused: true},
		{name: "marked", spec: v1alpha1.GitRepositorySpec{Path: "deploy"}, inv: applied, files: []git.File{{Path: AllowEmptyFile}}},
		{name: "marker deeper down is not the marker", spec: v1alpha1.GitRepositorySpec{Path: "deploy"}, inv: applied,
			files: []git.File{{Path: "sub/" + AllowEmptyFile}}, refused: true},
		{name: "no prune", spec: v1alpha1.GitRepositorySpec{Path: "deploy", Prune: &off}, inv: applied},
		{name: "nothing applied yet", spec: v1alpha1.GitRepositorySpec{Path: "deploy"}},
	} {
		repo := &v1alpha1.GitRepository{Spec: c.spec, Status: v1alpha1.GitRepositoryStatus{Inventory: c.inv}}
		err := refuseEmpty(repo, &git.Tree{Commit: "0123456789abcdef0123456789abcdef01234567", Files: c.files}, c.objects)
		if (err != nil) != c.refused {
			t.Errorf("%s: %v, want refused %v", c.name, err, c.refused)
		}
		if err != nil && !strings.Contains(err.Error(), "deploy/"+AllowEmptyFile) {
			t.Errorf("%s: the error does not name the marker to commit: %v", c.name, err)
		}
	}
}
