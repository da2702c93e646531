package embeddedetcd

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/test/freeport"
)

// freeAddr is a loopback address nothing listens on now, and not handed
// out before in this test binary.
func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// testCA writes a CA's certificate and key files, as the Secret would hold.
func testCA(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	ca, err := selfMadeAuthority()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := os.WriteFile(certFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := x509.MarshalECPrivateKey(ca.key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := writePEM(keyFile, "EC PRIVATE KEY", key); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// formedFlag stands in for the ConfigMap that records that the cluster
// formed (pkg/cmd/server keeps it in kube-apiserver; test/install runs it).
type formedFlag struct{ formed atomic.Bool }

func (f *formedFlag) Formed(context.Context) (bool, error) { return f.formed.Load(), nil }
func (f *formedFlag) MarkFormed(context.Context) error     { f.formed.Store(true); return nil }
func (f *formedFlag) String() string                       { return "the test's formed flag" }

// putThrough writes key through member s.
func putThrough(ctx context.Context, t *testing.T, s *Server, key, value string) {
	t.Helper()
	c := client(t, s)
	defer c.Close()
	if _, err := c.Put(ctx, key, value); err != nil {
		t.Fatalf("put through %s: %v", s.ClientURLs(), err)
	}
}

// getThrough reads key through member s (linearizable: through the leader).
func getThrough(ctx context.Context, t *testing.T, s *Server, key string) string {
	t.Helper()
	c := client(t, s)
	defer c.Close()
	resp, err := c.Get(ctx, key)
	if err != nil {
		t.Fatalf("get through %s: %v", s.ClientURLs(), err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

type testMembers struct {
	t                 *testing.T
	members           map[string]MemberURLs
	listen            map[string][2]string
	dirs              map[string]string
	caFile, caKeyFile string
	formed            formedFlag
}

func newTestMembers(t *testing.T, n int) *testMembers {
	m := &testMembers{t: t, members: map[string]MemberURLs{}, listen: map[string][2]string{}, dirs: map[string]string{}}
	m.caFile, m.caKeyFile = testCA(t)
	for i := range n {
		name := fmt.Sprintf("alumiini-%d", i)
		peer, client := freeAddr(t), freeAddr(t)
		m.members[name] = MemberURLs{Peer: "https://" + peer, Client: "https://" + client}
		m.listen[name] = [2]string{peer, client}
		m.dirs[name] = t.TempDir()
	}
	return m
}

func (m *testMembers) start(ctx context.Context, name string) (*Server, error) {
	return Start(ctx, Config{DataDir: m.dirs[name], UnsafeNoFsync: true, StartTimeout: time.Minute, Cluster: &Cluster{
		Name: name, Members: m.members, ListenPeer: m.listen[name][0], ListenClient: m.listen[name][1],
		CAFile: m.caFile, CAKeyFile: m.caKeyFile, Formed: &m.formed}})
}

// TestThreeMembersKeepServingAndRejoin: three members started at once form
// one cluster; what one writes the others read; with one stopped the others
// still write; it restarts on its data and rejoins; with its data lost it
// is removed and added anew by itself, and catches up.
func TestThreeMembersKeepServingAndRejoin(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m := newTestMembers(t, 3)
	servers := m.startAll(ctx, "alumiini-0", "alumiini-1", "alumiini-2")
	if t.Failed() {
		return
	}
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	put := func(name, key, value string) { t.Helper(); putThrough(ctx, t, servers[name], key, value) }
	get := func(name, key string) string { t.Helper(); return getThrough(ctx, t, servers[name], key) }
	put("alumiini-0", "/k", "one")
	if got := get("alumiini-2", "/k"); got != "one" {
		t.Fatalf("alumiini-2 reads %q, want what alumiini-0 wrote", got)
	}

	servers["alumiini-2"].Close()
	delete(servers, "alumiini-2")
	put("alumiini-1", "/k", "two") // two of three: a quorum
	restarted, err := m.start(ctx, "alumiini-2")
	if err != nil {
		t.Fatalf("restarting alumiini-2 on its data: %v", err)
	}
	servers["alumiini-2"] = restarted
	if got := get("alumiini-2", "/k"); got != "two" {
		t.Fatalf("alumiini-2 rejoined reads %q, want two", got)
	}

	// Its volume is lost.
	servers["alumiini-2"].Close()
	delete(servers, "alumiini-2")
	if err := os.RemoveAll(m.dirs["alumiini-2"]); err != nil {
		t.Fatal(err)
	}
	put("alumiini-0", "/k", "three")
	fresh, err := m.start(ctx, "alumiini-2")
	if err != nil {
		t.Fatalf("starting alumiini-2 without its data: %v", err)
	}
	servers["alumiini-2"] = fresh
	if got := get("alumiini-2", "/k"); got != "three" {
		t.Fatalf("alumiini-2 re-added reads %q, want three", got)
	}
	c := client(t, servers["alumiini-0"])
	defer c.Close()
	list, err := c.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Members) != 3 {
		t.Errorf("%d members after the re-add, want 3: %v", len(list.Members), list.Members)
	}
	for _, member := range list.Members {
		if member.Name == "" || member.IsLearner {
			t.Errorf("member %v is not a started voting member", member)
		}
	}
}

// startAll starts the named members at once and fails the test if one
// does not start.
func (m *testMembers) startAll(ctx context.Context, names ...string) map[string]*Server {
	servers := map[string]*Server{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Go(func() {
			s, err := m.start(ctx, name)
			if err != nil {
				m.t.Errorf("starting %s: %v", name, err)
				return
			}
			mu.Lock()
			servers[name] = s
			mu.Unlock()
		})
	}
	wg.Wait()
	return servers
}

// TestALostMemberNeverStartsANewClusterAlone: with every member down and
// one member's volume lost, that member, started first, refuses to start a
// new cluster (it would come back under its old identity with an empty
// log, and with a member that missed the last write form a quorum that
// lost it); once members with data run, it joins and reads the last write.
func TestALostMemberNeverStartsANewClusterAlone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	m := newTestMembers(t, 3)
	servers := m.startAll(ctx, "alumiini-0", "alumiini-1", "alumiini-2")
	if t.Failed() {
		return
	}
	write := func(name, value string) { t.Helper(); putThrough(ctx, t, servers[name], "/k", value) }
	write("alumiini-0", "one")
	servers["alumiini-1"].Close() // alumiini-1 misses the next write
	write("alumiini-0", "two")
	servers["alumiini-0"].Close()
	servers["alumiini-2"].Close()
	if err := os.RemoveAll(m.dirs["alumiini-2"]); err != nil {
		t.Fatal(err)
	}

	if s, err := m.start(ctx, "alumiini-2"); err == nil {
		s.Close()
		t.Fatal("a member without data, alone, started a new cluster after the cluster had formed")
	} else if !strings.Contains(err.Error(), "formed before") {
		t.Fatalf("a member without data, alone: %v", err)
	}

	servers = m.startAll(ctx, "alumiini-1", "alumiini-0")
	if t.Failed() {
		return
	}
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	fresh, err := m.start(ctx, "alumiini-2")
	if err != nil {
		t.Fatalf("alumiini-2 without data, once the others run: %v", err)
	}
	servers["alumiini-2"] = fresh
	if got := getThrough(ctx, t, fresh, "/k"); got != "two" {
		t.Fatalf("alumiini-2 re-added reads %q, want the last write, two", got)
	}
}
