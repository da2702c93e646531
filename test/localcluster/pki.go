package localcluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is the set of certificates and keys a local control plane needs, as
// files under one directory.
type pki struct {
	dir string
}

// The files of a pki, relative to its directory.
const (
	caCert              = "ca.crt"
	kubeServingCert     = "kube-apiserver"
	adminClientCert     = "admin"
	alumiiniClientCert  = "alumiini-client"
	alumiiniServingCert = "alumiini-serving"
	frontProxyCACert    = "front-proxy-ca.crt"
	frontProxyClient    = "front-proxy-client"
	serviceAccountKey   = "sa.key"
	serviceAccountPub   = "sa.pub"
)

func (p pki) path(name string) string { return filepath.Join(p.dir, name) }
func (p pki) cert(name string) string { return p.path(name + ".crt") }
func (p pki) key(name string) string  { return p.path(name + ".key") }

type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// generatePKI writes a fresh set of certificates: a cluster CA with the
// kube-apiserver serving cert and client certs, a front-proxy CA with the
// aggregator's client cert, alumiini's serving cert (valid for its Service
// name, so the aggregator verifies it against the APIService's caBundle), and
// the service-account signing key. ECDSA keeps generation instant.
func generatePKI(dir, alumiiniServiceDNS string) (pki, error) {
	p := pki{dir: dir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return p, fmt.Errorf("creating %s: %w", dir, err)
	}
	loopback := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	clusterCA, err := newAuthority("alumiini-local-ca", p.path(caCert), p.path("ca.key"))
	if err != nil {
		return p, err
	}
	frontProxyCA, err := newAuthority("alumiini-local-front-proxy-ca", p.path(frontProxyCACert), p.path("front-proxy-ca.key"))
	if err != nil {
		return p, err
	}
	leaves := []struct {
		ca     *authority
		name   string
		cn     string
		orgs   []string
		dns    []string
		ips    []net.IP
		server bool
	}{
		{ca: clusterCA, name: kubeServingCert, cn: "kube-apiserver", server: true, ips: append(loopback, net.ParseIP("10.96.0.1")),
			dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"}},
		{ca: clusterCA, name: adminClientCert, cn: "admin", orgs: []string{"system:masters"}},
		{ca: clusterCA, name: alumiiniClientCert, cn: "system:serviceaccount:alumiini-system:alumiini",
			orgs: []string{"system:serviceaccounts", "system:serviceaccounts:alumiini-system"}},
		{ca: clusterCA, name: alumiiniServingCert, cn: alumiiniServiceDNS, server: true, ips: loopback,
			dns: []string{alumiiniServiceDNS, "localhost"}},
		{ca: frontProxyCA, name: frontProxyClient, cn: "front-proxy-client"},
	}
	for _, leaf := range leaves {
		if err := leaf.ca.issue(p.cert(leaf.name), p.key(leaf.name), leaf.cn, leaf.orgs, leaf.dns, leaf.ips, leaf.server); err != nil {
			return p, fmt.Errorf("issuing %s: %w", leaf.name, err)
		}
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return p, err
	}
	if err := writeKey(p.path(serviceAccountKey), saKey); err != nil {
		return p, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return p, err
	}
	return p, writePEM(p.path(serviceAccountPub), "PUBLIC KEY", pub, 0o644)
}

func newAuthority(cn, certFile, keyFile string) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	template := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("creating CA %s: %w", cn, err)
	}
	cert, _ := x509.ParseCertificate(der)
	if err := writePEM(certFile, "CERTIFICATE", der, 0o644); err != nil {
		return nil, err
	}
	if err := writeKey(keyFile, key); err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key}, nil
}

func (a *authority) issue(certFile, keyFile, cn string, orgs, dns []string, ips []net.IP, server bool) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if server {
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	template := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  usage,
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return err
	}
	if err := writePEM(certFile, "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return writeKey(keyFile, key)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

func writeKey(file string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(file, "EC PRIVATE KEY", der, 0o600)
}

func writePEM(file, blockType string, der []byte, mode os.FileMode) error {
	data := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
	if err := os.WriteFile(file, data, mode); err != nil {
		return fmt.Errorf("writing %s: %w", file, err)
	}
	return nil
}
