package manifest

import (
	"context"
	"fmt"

	"sigs.k8s.io/kustomize/api/provider"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/api/types"
)

// maxKustomizations bounds the kustomizations one build runs, counting a
// directory once for every path that reaches it, as kustomize does: shared
// bases and components nested in diamonds would otherwise multiply the work
// exponentially, and a build cannot be interrupted.
const maxKustomizations = 1000

// maxGeneratedBytes bounds the bytes generators read in one build, counting
// a file once for every time a generator reads it: a 256 KiB file named by
// 200 generator entries once took half a GiB to build.
const maxGeneratedBytes = 16 << 20

// cost is what building a kustomization takes: the kustomizations it runs
// (its own included) and the bytes its generators read, each counted as
// often as a build repeats it.
type cost struct{ runs, generated int64 }

func (c cost) add(o cost) cost {
	return cost{runs: c.runs + o.runs, generated: c.generated + o.generated}
}

// preflight walks every kustomization a build will run, before it runs. It
// is what keeps kustomize off the network: krusty builds its own file loader
// (api/internal/loader), which fetches http(s) URLs and runs `git clone` for
// repository specs, and offers no way to replace it. So every location the
// loader will be asked for is read here first, from the kustomization types
// kustomize itself decodes (strictly: unknown fields are an error there too),
// and a remote one is refused. The walk also checks that local locations are
// in the repository, refuses plugins, and charges every YAML file and inline
// patch to the alias budget.
type preflight struct {
	repo    *repository
	budget  aliasBudget
	costs   map[string]cost // what building a directory takes, once walked
	walking map[string]bool // directories on the current path, to catch cycles
	charged map[string]bool // YAML files already charged
	objects *resource.Factory
}

func newPreflight(repo *repository) *preflight {
	return &preflight{
		repo:    repo,
		costs:   map[string]cost{},
		walking: map[string]bool{},
		charged: map[string]bool{},
		objects: provider.NewDefaultDepProvider().GetResourceFactory(),
	}
}

// kustomization walks the kustomization in dir, which must hold one, and
// returns what building it costs.
func (p *preflight) kustomization(ctx context.Context, dir string) (cost, error) {
	if c, ok := p.costs[dir]; ok {
		return c, nil
	}
	file, k, err := p.load(dir)
	if err != nil {
		return cost{}, err
	}
	if err := ctx.Err(); err != nil {
		return cost{}, stopped(file, err)
	}
	p.walking[dir] = true
	defer delete(p.walking, dir)
	total := cost{runs: 1}
	for _, ref := range references(k) {
		c, err := p.follow(ctx, dir, file, ref)
		if err != nil {
			return cost{}, err
		}
		total = total.add(c)
		switch {
		case total.runs > maxKustomizations:
			return cost{}, &Error{Source: file, Message: fmt.Sprintf(
				"%s: building this runs more than %d kustomizations (bases and components reached by many paths)",
				ref.field, maxKustomizations)}
		case total.generated > maxGeneratedBytes:
			return cost{}, &Error{Source: file, Message: fmt.Sprintf(
				"%s: generators would read more than %d MiB in this build (each file counted every time it is read)",
				ref.field, maxGeneratedBytes>>20)}
		}
	}
	p.costs[dir] = total
	return total, nil
}

// load reads the kustomization in dir as kustomize will, after charging it.
func (p *preflight) load(dir string) (string, *types.Kustomization, error) {
	file, err := p.repo.kustomizationIn(dir)
	if err != nil {
		return "", nil, err
	}
	if file == "" {
		return "", nil, &Error{Source: displayDir(dir), Message: "holds no kustomization.yaml"}
	}
	if err := p.chargeFile(file); err != nil {
		return "", nil, err
	}
	var k types.Kustomization
	if err := k.Unmarshal(p.repo.files[file]); err != nil {
		return "", nil, &Error{Source: file, Message: err.Error()}
	}
	if err := refusePlugins(file, &k); err != nil {
		return "", nil, err
	}
	return file, &k, nil
}

// follow checks one reference of the kustomization file in dir and walks
// into it; it returns what that costs.
func (p *preflight) follow(ctx context.Context, dir, file string, ref reference) (cost, error) {
	if ref.kind == refInline || ref.kind == refStrategicMerge {
		if err := p.budget.charge(fmt.Sprintf("%s (%s)", file, ref.field), []byte(ref.value)); err != nil {
			return cost{}, err
		}
		if ref.kind == refInline || p.isInlinePatch(ref.value) {
			return cost{}, nil
		}
	}
	if why := remoteForm(ref.value); why != "" {
		return cost{}, &Error{Source: file, Message: fmt.Sprintf(
			"%s: remote location %q (%s) is not allowed: a kustomization reads only files of its repository; vendor it",
			ref.field, ref.value, why)}
	}
	target := resolve(dir, ref.value)
	switch {
	case p.repo.hasFile(target) && ref.kind != refComponent:
		if ref.kind == refData {
			return cost{generated: int64(len(p.repo.files[target]))}, nil
		}
		return cost{}, p.chargeFile(target)
	case p.repo.dirs[target] && (ref.kind == refResource || ref.kind == refComponent):
		return p.base(ctx, file, ref, target)
	}
	return cost{}, &Error{Source: file, Message: fmt.Sprintf("%s: %q is not a %s in the repository", ref.field, ref.value, ref.kind.want())}
}

// base walks into a directory named by resources, bases or components.
func (p *preflight) base(ctx context.Context, file string, ref reference, dir string) (cost, error) {
	if p.walking[dir] {
		return cost{}, &Error{Source: file, Message: fmt.Sprintf("%s: %q leads back to %s: a cycle", ref.field, ref.value, displayDir(dir))}
	}
	kf, err := p.repo.kustomizationIn(dir)
	if err != nil {
		return cost{}, err
	}
	if kf == "" {
		return cost{}, &Error{Source: file, Message: fmt.Sprintf("%s: directory %q holds no kustomization.yaml", ref.field, ref.value)}
	}
	return p.kustomization(ctx, dir)
}

// isInlinePatch decides as kustomize's PatchStrategicMergeTransformer does:
// an entry that parses as objects is the patch itself, else it is a file.
func (p *preflight) isInlinePatch(entry string) bool {
	_, err := p.objects.SliceFromBytes([]byte(entry))
	return err == nil
}

func (p *preflight) chargeFile(name string) error {
	if p.charged[name] {
		return nil
	}
	p.charged[name] = true
	return p.budget.charge(name, p.repo.files[name])
}
