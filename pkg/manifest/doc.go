// Package manifest turns one path of a commit into Kubernetes objects: a
// directory of YAML and JSON files, or a kustomization built in memory over
// the repository's files, with no network, plugins or exec, and bounded input.
package manifest
