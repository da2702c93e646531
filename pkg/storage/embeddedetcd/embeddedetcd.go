// Package embeddedetcd runs etcd inside the alumiini process, so a single
// binary needs no external database. It listens on loopback only, on ports the
// kernel picks, accepts only clients holding a certificate it made at start,
// and keeps its data in one directory that survives restarts.
package embeddedetcd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
)

// Config says where etcd keeps its data.
type Config struct {
	// DataDir holds the WAL and snapshots; created with mode 0700 if missing.
	DataDir string
	// StartTimeout bounds the wait for etcd to become ready.
	StartTimeout time.Duration
	// UnsafeNoFsync skips fsync, for tests only: a crash may lose writes.
	UnsafeNoFsync bool
	// Cluster, when set, makes this etcd one member of several; nil: a
	// single member on loopback.
	Cluster *Cluster
	// OnFailure is told once if etcd fails or stops after start-up other
	// than by Close: the process cannot serve without it, and /livez leaves
	// etcd out, so the process should end and be restarted.
	OnFailure func(error)
}

// Server is a running embedded etcd.
type Server struct {
	etcd        *embed.Etcd
	clientURLs  []string
	closing     *atomic.Bool
	credentials *credentials
	closeOnce   sync.Once
}

// raftEntriesKept: the applied raft entries a single member leaves in memory
// at each compaction of its log (etcd compacts every 100 applies). Only
// followers read them; 0 would mean etcd's default, 5,000.
const raftEntriesKept = 100

// Start runs etcd and returns once it serves clients, or fails with the reason
// etcd gave (which its own log lines otherwise bury).
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("embedded etcd needs a data directory (--etcd-data-dir)")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating etcd data directory %s: %w", cfg.DataDir, err)
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = time.Minute
		if cfg.Cluster != nil {
			// A new cluster is ready once a quorum of members runs, and
			// their pods may be scheduled minutes apart.
			cfg.StartTimeout = 5 * time.Minute
		}
	}

	ecfg := embed.NewConfig()
	ecfg.Name = "alumiini"
	ecfg.Dir = cfg.DataDir
	ecfg.UnsafeNoFsync = cfg.UnsafeNoFsync
	closing := &atomic.Bool{}
	ecfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(newLogger(closing))
	// Port 0: the kernel picks free ports, so several alumiini processes (tests,
	// a dev server) never collide. Peers are never dialled in a single-member cluster.
	loopback := url.URL{Scheme: "https", Host: "127.0.0.1:0"}
	creds, err := credentialsFor(cfg.Cluster)
	if err != nil {
		return nil, err
	}
	serving := transport.TLSInfo{CertFile: creds.server.CertFile, KeyFile: creds.server.KeyFile,
		TrustedCAFile: creds.server.CAFile, ClientCertAuth: true}
	ecfg.ClientTLSInfo, ecfg.PeerTLSInfo = serving, serving
	if cfg.Cluster != nil {
		if err := cfg.Cluster.configure(ctx, ecfg, creds); err != nil {
			creds.remove()
			return nil, err
		}
	} else {
		ecfg.ListenClientUrls = []url.URL{loopback}
		ecfg.AdvertiseClientUrls = []url.URL{loopback}
		ecfg.ListenPeerUrls = []url.URL{loopback}
		ecfg.AdvertisePeerUrls = []url.URL{loopback}
		ecfg.InitialCluster = ecfg.InitialClusterFromName(ecfg.Name)
		// By default etcd keeps its last 5,000 raft entries in memory for
		// followers to catch up from; a single member has none, and those
		// entries (each write's whole object) were 7% of the heap profile
		// after `make bench` synced 1,000 GitRepositories.
		ecfg.SnapshotCatchUpEntries = raftEntriesKept
		// Raft ticks only time elections and heartbeats, and a single member
		// sends no heartbeats: ticking every 300 ms instead of 100 wakes the
		// idle process less, for at most half a second more at start (a
		// single member skips ahead to its last election tick).
		ecfg.TickMs = 300
		ecfg.ElectionMs = 5 * ecfg.TickMs // the least etcd accepts
		// etcd commits its database (bbolt) every 100 ms by default, waking
		// the idle process ten times a second to find nothing to commit.
		// Every write is in the fsynced WAL first, so a crash loses nothing
		// by committing once a second; the standalone process idled at 52-55
		// CPU ticks per 2 minutes instead of 61-62.
		ecfg.BackendBatchInterval = time.Second
	}
	// No client-facing metrics listener or v2 gateway: only loopback gRPC.
	ecfg.ListenMetricsUrls = nil

	e, err := embed.StartEtcd(ecfg)
	if err != nil {
		creds.remove()
		return nil, fmt.Errorf("starting embedded etcd in %s: %w", cfg.DataDir, err)
	}
	started := false
	defer func() {
		if !started {
			creds.remove()
		}
	}()
	timer := time.NewTimer(cfg.StartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s failed while starting: %w", cfg.DataDir, err)
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s not ready after %s", cfg.DataDir, cfg.StartTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("starting embedded etcd: %w", ctx.Err())
	}

	started = true
	s := &Server{etcd: e, closing: closing, credentials: creds}
	if cfg.Cluster != nil {
		// Ready means a quorum formed: from now on a member without data
		// never starts a new cluster alone. A failing record (kube-apiserver
		// away) is retried rather than taking a healthy member down.
		go markFormed(ctx, cfg.Cluster.Formed)
	}
	for _, l := range e.Clients {
		// This replica's API server uses the loopback listener only.
		if addr, ok := l.Addr().(*net.TCPAddr); ok && addr.IP.IsLoopback() {
			s.clientURLs = append(s.clientURLs, "https://"+l.Addr().String())
		}
	}
	go watchForFailure(e, closing, cfg.OnFailure)
	klog.InfoS("Embedded etcd ready", "dataDir", cfg.DataDir, "clientURLs", s.clientURLs)
	return s, nil
}

// ClientURLs are the loopback URLs etcd serves clients on.
func (s *Server) ClientURLs() []string { return s.clientURLs }

// ClientTLS is the client certificate etcd accepts; it is valid while etcd runs.
func (s *Server) ClientTLS() TLSFiles { return s.credentials.client }

// watchForFailure waits for etcd to fail (its listeners report fatal errors
// on Err) or to stop other than by Close, and tells onFailure.
func watchForFailure(e *embed.Etcd, closing *atomic.Bool, onFailure func(error)) {
	var err error
	select {
	case err = <-e.Err(): // nil once Close closed it
	case <-e.Server.StopNotify():
		err = errors.New("the etcd server stopped")
	}
	if err == nil || closing.Load() {
		return
	}
	klog.ErrorS(err, "Embedded etcd failed")
	if onFailure != nil {
		onFailure(err)
	}
}

// Close stops etcd after its in-flight requests; everything committed before
// is on disk.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		s.etcd.Close()
		<-s.etcd.Server.StopNotify()
		s.credentials.remove()
	})
}

func credentialsFor(cluster *Cluster) (*credentials, error) {
	if cluster == nil {
		return newCredentials()
	}
	if err := cluster.validate(); err != nil {
		return nil, err
	}
	dns, ips := cluster.hosts()
	return newClusterCredentials(cluster.CAFile, cluster.CAKeyFile, dns, ips)
}

// markFormed records that the cluster formed, retrying until it is
// recorded or ctx ends.
func markFormed(ctx context.Context, record FormedRecord) {
	backoff := wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: 100, Cap: time.Minute}
	_ = wait.ExponentialBackoffWithContext(ctx, backoff, func(ctx context.Context) (bool, error) {
		err := record.MarkFormed(ctx)
		if err != nil {
			klog.ErrorS(err, "Recording that the embedded etcd cluster formed; retrying")
		}
		return err == nil, nil
	})
}
