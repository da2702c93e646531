package manifest

import (
	"fmt"
	"strings"

	"sigs.k8s.io/kustomize/api/types"
)

// refKind is what kustomize does with a string of a kustomization.
type refKind int

const (
	// refResource is a file of objects, or a directory holding a
	// kustomization: kustomize tries Load, then New.
	refResource refKind = iota
	// refComponent is a directory holding a Component (New).
	refComponent
	// refYAML is a file kustomize parses as YAML or JSON (Load).
	refYAML
	// refData is a file kustomize reads as bytes or env lines (Load).
	refData
	// refStrategicMerge is a patchesStrategicMerge entry: inline YAML if it
	// parses as objects, else a file (Load).
	refStrategicMerge
	// refInline is YAML written in the kustomization, not a location.
	refInline
)

func (k refKind) want() string {
	switch k {
	case refResource:
		return "file or directory"
	case refComponent:
		return "directory"
	}
	return "file"
}

// reference is one string of a kustomization that kustomize reads from.
type reference struct {
	field string // where it is written, e.g. patches[2].path
	value string
	kind  refKind
}

// references lists, field by field, every location k makes kustomize's
// loader read, and every inline YAML it parses. Fields that load nothing
// (names, labels, images, replicas, vars, ...) are left out; plugin fields
// are refused before this is called. TestEveryKustomizationFieldIsKnown
// fails when kustomize grows a field, so a new way to read cannot slip by.
func references(k *types.Kustomization) []reference {
	var refs []reference
	list := func(kind refKind, field string, values []string) {
		for i, v := range values {
			refs = append(refs, reference{field: fmt.Sprintf("%s[%d]", field, i), value: v, kind: kind})
		}
	}
	list(refResource, "resources", k.Resources)
	list(refResource, "bases", k.Bases)
	list(refComponent, "components", k.Components)
	for i, p := range k.PatchesStrategicMerge {
		refs = append(refs, reference{field: fmt.Sprintf("patchesStrategicMerge[%d]", i), value: string(p), kind: refStrategicMerge})
	}
	refs = append(refs, patchReferences("patches", k.Patches)...)
	refs = append(refs, patchReferences("patchesJson6902", k.PatchesJson6902)...)
	for i, g := range k.ConfigMapGenerator {
		refs = append(refs, sourceReferences(fmt.Sprintf("configMapGenerator[%d]", i), g.KvPairSources)...)
	}
	for i, g := range k.SecretGenerator {
		refs = append(refs, sourceReferences(fmt.Sprintf("secretGenerator[%d]", i), g.KvPairSources)...)
	}
	if p, ok := k.OpenAPI["path"]; ok {
		refs = append(refs, reference{field: "openapi.path", value: p, kind: refYAML})
	}
	list(refYAML, "crds", k.Crds)
	list(refYAML, "configurations", k.Configurations)
	for i, r := range k.Replacements {
		if r.Path != "" {
			refs = append(refs, reference{field: fmt.Sprintf("replacements[%d].path", i), value: r.Path, kind: refYAML})
		}
	}
	return refs
}

func patchReferences(field string, patches []types.Patch) []reference {
	var refs []reference
	for i, p := range patches {
		if p.Path != "" {
			refs = append(refs, reference{field: fmt.Sprintf("%s[%d].path", field, i), value: p.Path, kind: refYAML})
		}
		if p.Patch != "" {
			refs = append(refs, reference{field: fmt.Sprintf("%s[%d].patch", field, i), value: p.Patch, kind: refInline})
		}
	}
	return refs
}

// sourceReferences lists a generator's files and env files. Literals are
// values, not locations.
func sourceReferences(field string, s types.KvPairSources) []reference {
	var refs []reference
	for i, f := range s.FileSources {
		if p, ok := fileSourcePath(f); ok {
			refs = append(refs, reference{field: fmt.Sprintf("%s.files[%d]", field, i), value: p, kind: refData})
		}
	}
	for i, e := range s.EnvSources {
		refs = append(refs, reference{field: fmt.Sprintf("%s.envs[%d]", field, i), value: e, kind: refData})
	}
	if s.EnvSource != "" {
		refs = append(refs, reference{field: field + ".env", value: s.EnvSource, kind: refData})
	}
	return refs
}

// fileSourcePath returns the path of a generator's "[key=]path" source, as
// kustomize's generators.ParseFileSource does; a source it rejects loads
// nothing.
func fileSourcePath(source string) (string, bool) {
	switch strings.Count(source, "=") {
	case 0:
		return source, true
	case 1:
		key, p, _ := strings.Cut(source, "=")
		return p, key != "" && p != ""
	}
	return "", false
}

// refusePlugins refuses what would run code or a program: plugins, and
// helm (which runs the helm binary and fetches charts).
func refusePlugins(file string, k *types.Kustomization) error {
	var fields []string
	for _, f := range []struct {
		name string
		used bool
	}{
		{"generators", len(k.Generators) > 0},
		{"transformers", len(k.Transformers) > 0},
		{"validators", len(k.Validators) > 0},
		{"helmCharts", len(k.HelmCharts) > 0},
		{"helmChartInflationGenerator", len(k.HelmChartInflationGenerator) > 0},
		{"helmGlobals", k.HelmGlobals != nil},
	} {
		if f.used {
			fields = append(fields, f.name)
		}
	}
	if len(fields) == 0 {
		return nil
	}
	return &Error{Source: file, Message: strings.Join(fields, ", ") + ": not allowed: plugins and helm charts " +
		"run programs or fetch over the network; render them into the repository instead"}
}
