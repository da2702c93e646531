package freeport

import (
	"fmt"
	"net"
	"sync"
)

// Loopback returns a port on 127.0.0.1 free when asked. It never returns a
// port it returned before in this process: the kernel may hand a just-closed
// port out again, and a test that asks for several ports before binding any
// (an etcd cluster's peers) would otherwise get one twice. Another process
// (another package's test binary) may still take the port before the caller
// binds it.
func Loopback() (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("finding a free port: 100 tries gave only ports already handed out")
}

var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}
