package embeddedetcd

import (
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
type credentials struct {
	dir    string
	server TLSFiles // etcd's serving (and peer) certificate
	client TLSFiles // the API server's client certificate
}

func newCredentials() (*credentials, error) {
	dir, err := os.MkdirTemp("", "alumiini-etcd-tls-")
	if err != nil {
		return nil, fmt.Errorf("creating a directory for etcd's certificates: %w", err)
	}
	c := &credentials{dir: dir}
	if err := c.write(); err != nil {
		c.remove()
		return nil, fmt.Errorf("creating etcd's certificates: %w", err)
	}
	return c, nil
}

func (c *credentials) remove() { _ = os.RemoveAll(c.dir) }

func (c *credentials) write() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTemplate := template("alumiini-embedded-etcd-ca")
	caTemplate.IsCA = true
	caTemplate.BasicConstraintsValid = true
	caTemplate.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	caFile := filepath.Join(c.dir, "ca.crt")
	if err := writePEM(caFile, "CERTIFICATE", caDER); err != nil {
		return err
	}
	// etcd's certificate serves clients and also authenticates it to itself as
	// a peer, so it carries both usages.
	server := template("alumiini-embedded-etcd")
	server.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	server.DNSNames = []string{"localhost"}
	server.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if c.server, err = c.issue("server", server, caCert, caKey); err != nil {
		return err
	}
	client := template("alumiini-apiserver")
	client.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if c.client, err = c.issue("client", client, caCert, caKey); err != nil {
		return err
	}
	c.server.CAFile, c.client.CAFile = caFile, caFile
	return nil
}

func (c *credentials) issue(name string, tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (TLSFiles, error) {
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
