// +k8s:openapi-gen=true
// +k8s:deepcopy-gen=package
// +k8s:conversion-gen=github.com/falsesystems/alumiini/pkg/apis/alumiini
// +k8s:defaulter-gen=TypeMeta
// +groupName=alumiini.false.systems
// +k8s:openapi-model-package=com.github.falsesystems.alumiini.pkg.apis.alumiini.v1alpha1

// Package v1alpha1 is the v1alpha1 version of the alumiini.false.systems API,
// the form users and clients read and write.
package v1alpha1
