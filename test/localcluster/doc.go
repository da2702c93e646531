// Package localcluster runs a real control plane on loopback: etcd and
// kube-apiserver built from the module proxy, alumiini as a local process
// behind kube-apiserver's aggregator, and a git HTTP server. `make dev` and
// the end-to-end tests both start it through this package, so what a
// developer pokes at is exactly what the tests check.
package localcluster
