// Package controller keeps each GitRepository synced: a supervisor runs one
// worker goroutine per GitRepository, restarts one that panics with backoff
// (marking it Stalled past a restart intensity) without the others noticing,
// and each worker fetches, renders and applies its repository on its
// interval, on spec changes, on sync requests and on in-process triggers.
package controller
