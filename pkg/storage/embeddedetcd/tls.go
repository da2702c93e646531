package embeddedetcd

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/klog/v2"
)

// TLSFiles names a certificate, its key and the CA that signed the other
// side's certificate: what a client needs to reach the embedded etcd.
type TLSFiles struct {
	CertFile string
	KeyFile  string
	CAFile   string
}

// credentials are made anew at every start and live in a private directory
// for as long as etcd runs. etcd accepts only clients holding a certificate
// of this CA, so processes of other users in the pod or on the host can
// neither read nor write it, even though it listens on loopback.
//
// The directory is inside etcd's data directory (tlsDirPattern), not in
// /tmp: a process killed before it could remove its own leaves it behind,
// and the next start over the same data removes it (removeStaleCredentials)
// instead of letting crashes fill the disk.
type credentials struct {
	dir    string
	server TLSFiles // etcd's serving (and peer) certificate
	client TLSFiles // the API server's client certificate
}

// tlsDirPattern names the credentials' directories inside a data directory.
const tlsDirPattern = "tls-*"

// newCredentials makes, in a new directory under parent, a CA of its own
// and, from it, etcd's certificate for loopback and the API server's client
// certificate.
func newCredentials(parent string) (*credentials, error) {
	return makeCredentials(parent, nil, nil, nil)
}

// newClusterCredentials issues this member's certificates, in a new
// directory under parent, from the cluster's CA (files), for dns and ips,
// so peers and other members' clients accept it.
func newClusterCredentials(parent, caCertFile, caKeyFile string, dns []string, ips []net.IP) (*credentials, error) {
	ca, err := loadAuthority(caCertFile, caKeyFile)
	if err != nil {
		return nil, err
	}
	return makeCredentials(parent, ca, dns, ips)
}

type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

func loadAuthority(certFile, keyFile string) (*authority, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("the etcd members' CA (%s, %s): %w", certFile, keyFile, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("the etcd members' CA %s: %w", certFile, err)
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok || !cert.IsCA {
		return nil, fmt.Errorf("the etcd members' CA %s is not a CA certificate with a signing key", certFile)
	}
	data, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key, pem: data}, nil
}

func selfMadeAuthority() (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := template("alumiini-embedded-etcd-ca")
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &authority{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

func makeCredentials(parent string, ca *authority, dns []string, ips []net.IP) (*credentials, error) {
	dir, err := os.MkdirTemp(parent, tlsDirPattern)
	if err != nil {
		return nil, fmt.Errorf("creating a directory for etcd's certificates: %w", err)
	}
	c := &credentials{dir: dir}
	if ca == nil {
		ca, err = selfMadeAuthority()
	}
	if err == nil {
		err = c.write(ca, dns, ips)
	}
	if err != nil {
		c.remove()
		return nil, fmt.Errorf("creating etcd's certificates: %w", err)
	}
	return c, nil
}

func (c *credentials) remove() { _ = os.RemoveAll(c.dir) }

// removeStaleCredentials removes the credentials' directories in dataDir
// other than c's: those of processes that ended without removing their own.
// It is called once etcd serves from dataDir, holding its locks, so no
// other process can be serving from it with them.
func (c *credentials) removeStaleCredentials(dataDir string) {
	dirs, err := filepath.Glob(filepath.Join(dataDir, tlsDirPattern))
	if err != nil {
		return // only a malformed pattern fails, and tlsDirPattern is not one
	}
	for _, dir := range dirs {
		if dir == c.dir {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			klog.ErrorS(err, "Removing the certificates an earlier etcd left behind", "dir", dir)
		}
	}
}

func (c *credentials) write(ca *authority, dns []string, ips []net.IP) error {
	caFile := filepath.Join(c.dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		return err
	}
	// etcd's certificate serves clients and also authenticates it as a
	// peer (to itself, or to the other members), so it carries both usages.
	server := template("alumiini-embedded-etcd")
	server.IPAddresses = append([]net.IP{net.IPv4(127, 0, 0, 1)}, ips...)
	server.DNSNames = append([]string{"localhost"}, dns...)
	server.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	var err error
	if c.server, err = c.issue("server", server, ca.cert, ca.key); err != nil {
		return err
	}
	client := template("alumiini-apiserver")
	client.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if c.client, err = c.issue("client", client, ca.cert, ca.key); err != nil {
		return err
	}
	c.server.CAFile, c.client.CAFile = caFile, caFile
	return nil
}

func (c *credentials) issue(name string, tmpl, ca *x509.Certificate, caKey crypto.Signer) (TLSFiles, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return TLSFiles{}, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return TLSFiles{}, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return TLSFiles{}, err
	}
	files := TLSFiles{CertFile: filepath.Join(c.dir, name+".crt"), KeyFile: filepath.Join(c.dir, name+".key")}
	if err := writePEM(files.CertFile, "CERTIFICATE", der); err != nil {
		return TLSFiles{}, err
	}
	return files, writePEM(files.KeyFile, "EC PRIVATE KEY", keyDER)
}

func template(commonName string) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    time.Now().Add(-time.Hour),
		// The files are remade at every start; ten years only keeps a long run valid.
		NotAfter: time.Now().AddDate(10, 0, 0),
	}
}

func writePEM(file, blockType string, der []byte) error {
	return os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600)
}
