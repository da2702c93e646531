// Package git turns a repository URL, a ref and credentials into the files of
// one commit under one path, cheaply and safely: an idle poll costs one ref
// listing, repositories on one URL share one object store and one fetch, and
// nothing outside the repository or beyond the limits is ever read: a hostile
// server or repository costs bounded bytes, time and fetch slots.
package git
