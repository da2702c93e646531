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
	"time"
)

// ExternalEtcd is an etcd of its own, run as production etcd clusters are:
// TLS with client-certificate authentication. Its client certificate files
// are what a user puts in the Secret the external-etcd overlay mounts.
type ExternalEtcd struct {
	// URL is the client URL (https, loopback).
	URL string
	// CAFile, CertFile and KeyFile authenticate a client.
	CAFile, CertFile, KeyFile string
	proc                      *process
}

// StartExternalEtcd starts an etcd with TLS under dir, on free loopback
// ports, built from the same tools as the control plane's.
func (c *Cluster) StartExternalEtcd(ctx context.Context, dir string) (*ExternalEtcd, error) {
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
	ports := make([]int, 2)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	e := &ExternalEtcd{URL: fmt.Sprintf("https://127.0.0.1:%d", ports[0]), CAFile: ca.CertFile, CertFile: client.CertFile, KeyFile: client.KeyFile}
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	e.proc, err = startProcess("external-etcd", filepath.Join(dir, "etcd.log"), c.tool("etcd"),
		"--name=external", "--data-dir="+filepath.Join(dir, "data"),
		"--listen-client-urls="+e.URL, "--advertise-client-urls="+e.URL,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer, "--initial-cluster=external="+peer,
		"--cert-file="+server.CertFile, "--key-file="+server.KeyFile,
		"--client-cert-auth", "--trusted-ca-file="+ca.CertFile, "--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return nil, err
	}
	healthy, err := e.healthClient()
	if err != nil {
		e.Stop()
		return nil, err
	}
	if err := waitFor(ctx, e.proc, 30*time.Second, func() bool {
		resp, err := healthy.Get(e.URL + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		e.Stop()
		return nil, err
	}
	return e, nil
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

// Stop stops the etcd.
func (e *ExternalEtcd) Stop() { e.proc.stop(5 * time.Second) }

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
