// Package gitrepository holds the registry strategies of GitRepository: what
// create, update and status writes may change, how it is validated, and how
// kubectl get prints it. Its storage lives in the storage subpackage.
package gitrepository
