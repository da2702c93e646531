// Package integration runs the alumiini API server in process, on a real
// embedded etcd, and drives it through the generated clientset.
package integration
