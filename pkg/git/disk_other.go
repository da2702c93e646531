//go:build !unix

package git

// freeBytes cannot tell the free space here; the reserve is not checked.
func freeBytes(string) (int64, bool) { return 0, false }
