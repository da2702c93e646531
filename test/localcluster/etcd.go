package localcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/falsesystems/alumiini/test/freeport"
)

// ExternalEtcd is an etcd cluster of its own, run as production etcd
// clusters are: TLS with client-certificate authentication. Its client
// certificate files are what a user puts in the Secret the external-etcd
// overlay mounts.
type ExternalEtcd struct {
	// URL is the members' client URLs (https, loopback), comma-separated
	// as --etcd-servers takes them.
	URL string
	// CAFile, CertFile and KeyFile authenticate a client.
	CAFile, CertFile, KeyFile string
	urls                      []string
	procs                     []*process
}

// StartExternalEtcd starts a one-member etcd with TLS under dir, on free
// loopback ports, built from the same tools as the control plane's.
func (c *Cluster) StartExternalEtcd(ctx context.Context, dir string) (*ExternalEtcd, error) {
	return c.StartExternalEtcdCluster(ctx, dir, 1)
}

// StartExternalEtcdCluster starts an etcd cluster of members members, as
// StartExternalEtcd does one.
func (c *Cluster) StartExternalEtcdCluster(ctx context.Context, dir string, members int) (*ExternalEtcd, error) {
	ca, err := NewCertificateAuthority(dir, "external-etcd-ca")
	if err != nil {
		return nil, err
	}
	loopback := []net.IP{net.ParseIP("127.0.0.1")}
	server, err := ca.Issue("etcd-server", "etcd", []string{"localhost"}, loopback, true)
	if err != nil {
		return nil, err
	}
	client, err := ca.Issue("etcd-client", "alumiini", nil, nil, false)
	if err != nil {
		return nil, err
	}
	ports := make([]int, 2*members)
	for i := range ports {
		if ports[i], err = freeport.Loopback(); err != nil {
			return nil, err
		}
	}
	e := &ExternalEtcd{CAFile: ca.CertFile, CertFile: client.CertFile, KeyFile: client.KeyFile}
	var initial []string
	for i := range members {
		e.urls = append(e.urls, fmt.Sprintf("https://127.0.0.1:%d", ports[2*i]))
		initial = append(initial, fmt.Sprintf("external-%d=http://127.0.0.1:%d", i, ports[2*i+1]))
	}
	e.URL = strings.Join(e.urls, ",")
	for i := range members {
		name, peer := fmt.Sprintf("external-%d", i), fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		proc, err := startProcess(name, filepath.Join(dir, name+".log"), c.tool("etcd"), nil,
			"--name="+name, "--data-dir="+filepath.Join(dir, name),
			"--listen-client-urls="+e.urls[i], "--advertise-client-urls="+e.urls[i],
			"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer, "--initial-cluster="+strings.Join(initial, ","),
			"--cert-file="+server.CertFile, "--key-file="+server.KeyFile,
			"--client-cert-auth", "--trusted-ca-file="+ca.CertFile, "--unsafe-no-fsync", "--log-level=warn")
		if err != nil {
			e.Stop()
			return nil, err
		}
		e.procs = append(e.procs, proc)
	}
	healthy, err := e.healthClient()
	if err != nil {
		e.Stop()
		return nil, err
	}
	for i, url := range e.urls {
		if err := waitFor(ctx, e.procs[i], 30*time.Second, func() bool {
			resp, err := healthy.Get(url + "/health")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}); err != nil {
			e.Stop()
			return nil, err
		}
	}
	return e, nil
}

// KillMember ends member i at once (SIGKILL), as a node loss does.
func (e *ExternalEtcd) KillMember(i int) {
	if p := e.procs[i]; !p.exited() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// healthClient reaches the etcd with its client certificate.
func (e *ExternalEtcd) healthClient() (*http.Client, error) {
	pair, err := tls.LoadX509KeyPair(e.CertFile, e.KeyFile)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(e.CAFile)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots}}}, nil
}

// Stop stops every member.
func (e *ExternalEtcd) Stop() {
	for _, p := range e.procs {
		p.stop(5 * time.Second)
	}
}

// CertificateAuthority issues certificates into files, as cert-manager or
// an etcd operator would for a real cluster.
type CertificateAuthority struct {
	dir string
	// CertFile is the CA's certificate (what a caBundle holds).
	CertFile string
	ca       *authority
}

// KeyPair is an issued certificate and its key, as files.
type KeyPair struct{ CertFile, KeyFile string }

// NewCertificateAuthority makes a CA whose files live in dir.
func NewCertificateAuthority(dir, name string) (*CertificateAuthority, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	certFile := filepath.Join(dir, name+".crt")
	ca, err := newAuthority(name, certFile, filepath.Join(dir, name+".key"))
	if err != nil {
		return nil, err
	}
	return &CertificateAuthority{dir: dir, CertFile: certFile, ca: ca}, nil
}

// Issue writes a certificate for cn (server or client use) and its key.
func (a *CertificateAuthority) Issue(name, cn string, dns []string, ips []net.IP, server bool) (KeyPair, error) {
	pair := KeyPair{CertFile: filepath.Join(a.dir, name+".crt"), KeyFile: filepath.Join(a.dir, name+".key")}
	if err := a.ca.issue(pair.CertFile, pair.KeyFile, cn, nil, dns, ips, server); err != nil {
		return pair, fmt.Errorf("issuing %s: %w", name, err)
	}
	return pair, nil
}
