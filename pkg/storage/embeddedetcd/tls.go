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
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
// The directory is in the temporary directory (a pod's emptyDir), not in
// the data directory: a cluster member's key is accepted by every member
// for years, and a volume's snapshots should not hold one. The process
// locks it while it runs, so a start can tell, and remove, the directories
// of processes killed before they could (removeStaleCredentials).
type credentials struct {
	dir  string
	lock *os.File // lockFile in dir, flock'ed while this process runs
	// dir itself, flock'ed too where the file system allows (not NFS):
	// systemd-tmpfiles skips a locked directory when it ages /tmp, and
	// versions before lockFile looked only at this lock.
	dirLock *os.File
	server  TLSFiles // etcd's serving (and peer) certificate
	client  TLSFiles // the API server's client certificate
}

// credentialsPrefix names the credentials' directories in the temporary
// directory.
const credentialsPrefix = "alumiini-etcd-tls-"

// lockFile, in a credentials' directory, is what its process locks: a
// regular file opened for writing, which flock can lock on NFS too (it
// emulates flock with fcntl there, which cannot lock a directory).
const lockFile = "lock"

// staleAfter: a directory younger than this is never removed as stale,
// since its process may not have locked it yet.
const staleAfter = time.Minute

// newCredentials makes a CA of its own and, from it, etcd's certificate
// for loopback and the API server's client certificate.
func newCredentials() (*credentials, error) {
	return makeCredentials(nil, nil, nil)
}

// newClusterCredentials issues this member's certificates from the
// cluster's CA (files), for dns and ips, so peers and other members'
// clients accept it.
func newClusterCredentials(caCertFile, caKeyFile string, dns []string, ips []net.IP) (*credentials, error) {
	ca, err := loadAuthority(caCertFile, caKeyFile)
	if err != nil {
		return nil, err
	}
	return makeCredentials(ca, dns, ips)
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

func makeCredentials(ca *authority, dns []string, ips []net.IP) (*credentials, error) {
	removeStaleCredentials()
	dir, err := os.MkdirTemp("", credentialsPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("creating a directory for etcd's certificates: %w", err)
	}
	c := &credentials{dir: dir}
	c.lock, err = lockIn(dir, true)
	c.dirLock, _ = lockDirectory(dir) // best-effort: see dirLock
	if err == nil && ca == nil {
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

func (c *credentials) remove() {
	_ = os.RemoveAll(c.dir)
	closeAll(c.lock, c.dirLock) // after the removal: no start takes it for stale meanwhile
}

// closeAll closes the files that are not nil.
func closeAll(files ...*os.File) {
	for _, f := range files {
		if f != nil {
			_ = f.Close()
		}
	}
}

// lockDirectory takes an exclusive lock on dir itself, without blocking or
// following a link; NFS refuses it.
func lockDirectory(dir string) (*os.File, error) {
	f, err := os.OpenFile(dir, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// lockIn takes an exclusive lock on dir's lockFile (made if create), held
// until the returned file is closed or the process ends, however it ends.
// It never blocks: not on a lock held, and not on a FIFO put in the file's
// place by another user of a shared /tmp (O_NONBLOCK); it refuses a link
// and a file that is not this user's own regular file.
func lockIn(dir string, create bool) (*os.File, error) {
	flags := os.O_RDWR | syscall.O_NOFOLLOW | syscall.O_NONBLOCK
	if create {
		flags |= os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), flags, 0o600)
	if err != nil {
		return nil, err
	}
	if info, err := f.Stat(); err != nil || !info.Mode().IsRegular() || !ownedByThisUser(info) {
		_ = f.Close()
		return nil, fmt.Errorf("%s is not a file of this user's", filepath.Join(dir, lockFile))
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	return f, nil
}

// ownedByThisUser: this process's (effective) user owns info's file.
func ownedByThisUser(info os.FileInfo) bool {
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}

// removeStaleCredentials removes the credentials' directories whose process
// ended without removing them (killed, or out of memory): this user's,
// unlocked (or without a lockFile: made by a version before it) and older
// than staleAfter. Each crash left one behind, and a pod's temporary
// directory outlives its container's restarts.
func removeStaleCredentials() {
	entries, err := os.ReadDir(os.TempDir())
	if err != nil {
		return
	}
	removed := 0
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), credentialsPrefix) {
			continue
		}
		dir := filepath.Join(os.TempDir(), e.Name())
		// Lstat: a link to a directory is not one.
		if info, err := os.Lstat(dir); err != nil || !info.IsDir() || !ownedByThisUser(info) || time.Since(info.ModTime()) < staleAfter {
			continue
		}
		dirLock, err := lockDirectory(dir)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			continue // its process still runs
		}
		lock, err := lockIn(dir, false)
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			if os.RemoveAll(dir) == nil {
				removed++
			}
		} // else its process still runs, or it is not ours
		closeAll(lock, dirLock)
	}
	if removed > 0 {
		klog.InfoS("Removed etcd certificates that killed processes left behind", "directories", removed, "in", os.TempDir())
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
