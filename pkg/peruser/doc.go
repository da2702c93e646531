// Package peruser bounds what one requester of alumiini's API holds at once
// (sync requests waiting for their result, watches), so that nobody can
// exhaust the process the API server, the controller and etcd share.
package peruser
