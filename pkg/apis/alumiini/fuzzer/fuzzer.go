// Package fuzzer holds the fuzz functions the round-trip test of the
// alumiini API group fills objects with.
package fuzzer

import (
	runtimeserializer "k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/randfill"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini"
)

// Funcs returns the fuzz functions of the alumiini API group. Random values
// round-trip as they are, except fields the versioned form defaults when nil:
// those are always set, as they are on any stored object.
var Funcs = func(codecs runtimeserializer.CodecFactory) []interface{} {
	return []interface{}{
		func(s *alumiini.GitRepositorySpec, c randfill.Continue) {
			c.FillNoCustom(s)
			if s.Prune == nil {
				prune := c.Bool()
				s.Prune = &prune
			}
			if s.Branch == "" && s.Tag == "" && s.Commit == "" {
				s.Branch = "main"
			}
			if s.Interval == "" {
				s.Interval = "5m"
			}
			if s.Timeout == "" {
				s.Timeout = "1m"
			}
			if s.Drift != nil && s.Drift.Mode == "" {
				s.Drift.Mode = alumiini.DriftCorrect
			}
			if s.Drift != nil && s.Drift.AllowBreakGlass == nil {
				allow := true
				s.Drift.AllowBreakGlass = &allow
			}
			if s.RolloutRef != nil && s.RolloutRef.APIVersion == "" {
				s.RolloutRef.APIVersion = "kulta.io/v1alpha1"
			}
			if s.RolloutRef != nil && s.RolloutRef.Kind == "" {
				s.RolloutRef.Kind = "Rollout"
			}
			// Empty lists are left out of JSON, and read back as nil.
			if len(s.HealthChecks) == 0 {
				s.HealthChecks = nil
			}
			if len(s.DependsOn) == 0 {
				s.DependsOn = nil
			}
		},
		func(s *alumiini.GitRepositorySyncRequestSpec, c randfill.Continue) {
			c.FillNoCustom(s)
			if s.Wait && s.TimeoutSeconds == nil {
				timeout := int32(1 + c.Intn(30))
				s.TimeoutSeconds = &timeout
			}
		},
	}
}
