package freeport

import "testing"

// Ports asked for one after another, none bound meanwhile, are all distinct,
// as an etcd cluster's client and peer ports must be.
func TestNoPortIsHandedOutTwice(t *testing.T) {
	seen := map[int]bool{}
	for range 500 {
		port, err := Loopback()
		if err != nil {
			t.Fatal(err)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
	}
}
