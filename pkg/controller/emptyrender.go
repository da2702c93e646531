package controller

import (
	"fmt"
	"path"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/git"
	"github.com/falsesystems/alumiini/pkg/manifest"
)

// AllowEmptyFile, at the root of a GitRepository's path, says the path is
// meant to render no object: only then does a commit that renders nothing
// prune everything applied before. A path emptied by a mistake (a bad
// merge, a moved directory, a kustomization whose resources went away) fails
// the sync instead, and nothing is deleted.
const AllowEmptyFile = ".alumiini-allow-empty"

// refuseEmpty fails a render of no object when pruning would delete what the
// GitRepository applied and the path does not hold AllowEmptyFile.
func refuseEmpty(repo *v1alpha1.GitRepository, tree *git.Tree, objects []manifest.Object) error {
	inventory := repo.Status.Inventory
	if len(objects) > 0 || inventory == nil || len(inventory.Entries) == 0 || repo.Spec.Prune != nil && !*repo.Spec.Prune {
		return nil
	}
	for _, f := range tree.Files {
		if f.Path == AllowEmptyFile {
			return nil
		}
	}
	where := "the repository root"
	if repo.Spec.Path != "" {
		where = repo.Spec.Path
	}
	return fmt.Errorf("commit %s renders no objects under %s, so pruning would delete all %d objects applied before; nothing was changed. "+
		"If the path is meant to be empty, commit an empty file %s", short(tree.Commit), where, len(inventory.Entries),
		path.Join(repo.Spec.Path, AllowEmptyFile))
}
