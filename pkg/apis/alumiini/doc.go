// +k8s:deepcopy-gen=package
// +groupName=alumiini.false.systems

// Package alumiini holds the internal (hub) version of the alumiini.false.systems
// API group: the types the registry, validation and strategies work on. Clients
// only ever see a versioned form such as v1alpha1.
package alumiini
