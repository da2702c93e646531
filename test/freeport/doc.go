// Package freeport finds loopback ports for the servers a test starts (etcd,
// kube-apiserver, sshd), never the same one twice in one test binary.
package freeport
