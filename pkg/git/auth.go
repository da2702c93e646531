package git

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	"k8s.io/utils/lru"
)

// The Secret keys alumiini reads, named as Flux names them.
const (
	KeyUsername    = "username"
	KeyPassword    = "password"
	KeyBearerToken = "bearerToken"
	KeyCACert      = "ca.crt"
	KeyIdentity    = "identity"
	KeyKnownHosts  = "known_hosts"
)

// SecretKeys are all the keys AuthFromSecret reads.
var SecretKeys = []string{KeyUsername, KeyPassword, KeyBearerToken, KeyCACert, KeyIdentity, KeyKnownHosts}

// Auth is what a repository needs to authenticate: HTTPS basic or bearer
// credentials and a CA, or an SSH key and the known host keys.
type Auth struct {
	Username    string
	Password    string
	BearerToken string
	CABundle    []byte
	Identity    []byte
	Passphrase  string
	KnownHosts  []byte
}

// AuthFromSecret reads credentials from the data of the Secret secretName for
// a repository at url. A missing or malformed key gives an error naming the
// Secret and the key, never its value.
func AuthFromSecret(secretName, url string, data map[string][]byte) (*Auth, error) {
	bad := func(key, format string, args ...any) error {
		return newError(ReasonInvalidCredentials, nil, "secret %q key %q: %s", secretName, key, fmt.Sprintf(format, args...))
	}
	a := &Auth{
		Username:    string(data[KeyUsername]),
		Password:    string(data[KeyPassword]),
		BearerToken: string(data[KeyBearerToken]),
		CABundle:    data[KeyCACert],
		Identity:    data[KeyIdentity],
		KnownHosts:  data[KeyKnownHosts],
	}
	if isSSH(url) {
		if len(a.Identity) == 0 {
			return nil, bad(KeyIdentity, "missing: an SSH URL needs a private key")
		}
		a.Passphrase, a.Password = a.Password, ""
		if _, err := a.signer(); err != nil {
			return nil, bad(KeyIdentity, "%v", err)
		}
		if len(a.KnownHosts) == 0 {
			return nil, bad(KeyKnownHosts, "missing: an SSH URL needs the server's host keys, so a changed or unknown key is refused")
		}
		if err := checkKnownHosts(a.KnownHosts); err != nil {
			return nil, bad(KeyKnownHosts, "%v", err)
		}
		return a, nil
	}
	if plainHTTP(url) && (a.Username != "" || a.Password != "" || a.BearerToken != "") {
		return nil, newError(ReasonInvalidCredentials, nil,
			"secret %q: credentials are never sent over plain http://, where anyone on the path can read them; use an https:// URL", secretName)
	}
	switch {
	case a.Username != "" && a.Password == "":
		return nil, bad(KeyPassword, "missing: username is set, so a password (or token) is needed")
	case a.Password != "" && a.Username == "":
		return nil, bad(KeyUsername, "missing: password is set, so a username is needed")
	case a.BearerToken != "" && a.Username != "":
		return nil, bad(KeyBearerToken, "set together with username; use one or the other")
	}
	if len(a.CABundle) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(a.CABundle) {
			return nil, bad(KeyCACert, "no PEM certificate found")
		}
	}
	if a.Username == "" && a.BearerToken == "" && len(a.CABundle) == 0 {
		return nil, newError(ReasonInvalidCredentials, nil, "secret %q has none of the keys %s, %s, %s or %s",
			secretName, KeyUsername, KeyPassword, KeyBearerToken, KeyCACert)
	}
	return a, nil
}

func (a *Auth) signer() (ssh.Signer, error) {
	var signer ssh.Signer
	var err error
	if a.Passphrase != "" {
		signer, err = ssh.ParsePrivateKeyWithPassphrase(a.Identity, []byte(a.Passphrase))
	} else {
		signer, err = ssh.ParsePrivateKey(a.Identity)
	}
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		return nil, errors.New("the private key is encrypted; put its passphrase under key \"password\"")
	case errors.Is(err, x509.IncorrectPasswordError):
		return nil, errors.New("the passphrase under key \"password\" does not decrypt the private key")
	case err != nil:
		if block, _ := pem.Decode(a.Identity); block == nil {
			return nil, errors.New("not a PEM-encoded private key")
		}
		return nil, errors.New("not a valid private key")
	}
	return signer, nil
}

func checkKnownHosts(data []byte) error {
	rest := data
	found := false
	for len(bytes.TrimSpace(rest)) > 0 {
		var err error
		_, _, _, _, rest, err = ssh.ParseKnownHosts(rest)
		if err != nil {
			return fmt.Errorf("not in known_hosts format")
		}
		found = true
	}
	if !found {
		return errors.New("holds no host key")
	}
	return nil
}

// fingerprint identifies the credentials without revealing them, so that
// repositories share a store only with the same URL and the same credentials.
func (a *Auth) fingerprint() string {
	if a == nil {
		return "anonymous"
	}
	h := sha256.New()
	for _, part := range [][]byte{[]byte(a.Username), []byte(a.Password), []byte(a.BearerToken), a.CABundle,
		a.Identity, []byte(a.Passphrase), a.KnownHosts} {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// method returns the go-git auth method for url.
func (a *Auth) method(url string) (transport.AuthMethod, error) {
	if a == nil {
		return nil, nil
	}
	if isSSH(url) {
		signer, err := a.signer()
		if err != nil {
			return nil, err
		}
		db, err := a.knownHosts()
		if err != nil {
			return nil, err
		}
		keys := &gitssh.PublicKeys{User: sshUser(url), Signer: signer}
		keys.HostKeyCallback = db.HostKeyCallback()
		// Ask the server for a key type known_hosts can verify.
		keys.HostKeyAlgorithms = db.HostKeyAlgorithms(sshAddress(url))
		return keys, nil
	}
	if plainHTTP(url) && (a.Username != "" || a.BearerToken != "") {
		// AuthFromSecret refuses these already; an Auth built by hand must
		// not leak them either.
		return nil, newError(ReasonInvalidCredentials, nil, "credentials are never sent over plain http://; use an https:// URL")
	}
	switch {
	case a.BearerToken != "":
		return &http.TokenAuth{Token: a.BearerToken}, nil
	case a.Username != "":
		return &http.BasicAuth{Username: a.Username, Password: a.Password}, nil
	}
	return nil, nil
}

// plainHTTP reports whether url is unencrypted http://.
func plainHTTP(url string) bool {
	return strings.HasPrefix(strings.ToLower(url), "http://")
}

// knownHosts accepts exactly the keys in known_hosts: an unknown host or a
// changed key is refused. A content seen before is not parsed again: the
// parser reads only files, and a temporary file per listing is what the
// cache saves.
func (a *Auth) knownHosts() (*knownhosts.HostKeyDB, error) {
	cacheable := len(a.KnownHosts) <= maxCachedKnownHostsBytes
	key := sha256.Sum256(a.KnownHosts)
	if cacheable {
		if db, ok := hostKeyDBs.Get(key); ok {
			return db.(*knownhosts.HostKeyDB), nil
		}
	}
	db, err := parseKnownHosts(a.KnownHosts)
	if err == nil && cacheable {
		hostKeyDBs.Add(key, db)
	}
	return db, err
}

// hostKeyDBs holds parsed known_hosts by their content's hash: at most
// maxCachedKnownHosts, each of at most maxCachedKnownHostsBytes (a larger
// one is parsed every time). Parsed, one takes up to ~23× its text (one
// line of thousands of host patterns): ~12 MiB for all at worst.
var hostKeyDBs = lru.New(maxCachedKnownHosts)

const (
	maxCachedKnownHosts      = 128
	maxCachedKnownHostsBytes = 4 << 10
)

func parseKnownHosts(content []byte) (*knownhosts.HostKeyDB, error) {
	f, err := os.CreateTemp("", "alumiini-known-hosts-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(content); err != nil {
		f.Close()
		return nil, err
	}
	f.Close()
	db, err := gitssh.NewKnownHostsDb(f.Name())
	if err != nil {
		return nil, fmt.Errorf("reading known_hosts: %w", err)
	}
	return db, nil
}
