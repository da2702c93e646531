package v1alpha1

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
)

// addFieldLabelConversions lets clients select GitRepositories by spec.url as
// well as by name and namespace, e.g. to find every one on a repository.
func addFieldLabelConversions(scheme *runtime.Scheme) error {
	return scheme.AddFieldLabelConversionFunc(SchemeGroupVersion.WithKind("GitRepository"),
		func(label, value string) (string, string, error) {
			switch label {
			case "metadata.name", "metadata.namespace", "spec.url":
				return label, value, nil
			}
			return "", "", fmt.Errorf("field label %q is not supported for GitRepository: use metadata.name, metadata.namespace or spec.url", label)
		})
}
