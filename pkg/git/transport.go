package git

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/net/proxy"
)

// Bounds on what go-git reads of one HTTP response or SSH session, whatever
// the fetch limit: it reads an error body and the whole ref advertisement
// into memory, and compares what precedes a pack line by line.
const (
	maxErrorBodyBytes     = 64 << 10
	maxAdvertisementBytes = 16 << 20
	maxPackHeadBytes      = 64 << 10
	maxTransportsByCA     = 32
	// meterScheme names the proxy "scheme" through which go-git's SSH
	// transport dials via us, so SSH bytes are counted like HTTP ones.
	meterScheme = "alumiini-meter"
)

func refsOverLimit(doing string) *Error {
	return newError(ReasonLimitExceeded, nil, "%s: the server's list of refs is over the limit of %s",
		doing, formatBytes(maxAdvertisementBytes))
}

var installOnce sync.Once

// installTransports puts our HTTP client, SSH dialer and SSH session bounds
// under go-git, and takes out the transports alumiini never uses, once per
// process: go-git's protocol table is global. Without "file", a URL go-git
// reads as a local path (git@x:\path, for one) cannot run git-upload-pack
// on this machine's files, such as another tenant's store.
//
// The HTTP client's RoundTripper is not an *http.Transport, and go-git
// (v5.19) refuses a non-*http.Transport when FetchOptions carry a CABundle,
// InsecureSkipTLS or proxy. So this package never passes those for HTTP: the
// CA travels in the request context, and the RoundTripper picks a transport
// that trusts it.
func installTransports() {
	installOnce.Do(func() {
		c := githttp.NewClient(&http.Client{Transport: &roundTripper{byCA: map[[32]byte]*http.Transport{}}})
		client.InstallProtocol("http", c)
		client.InstallProtocol("https", c)
		client.InstallProtocol("ssh", boundedSSH{gitssh.DefaultClient})
		client.InstallProtocol("file", nil)
		client.InstallProtocol("git", nil)
		proxy.RegisterDialerType(meterScheme, func(u *url.URL, _ proxy.Dialer) (proxy.Dialer, error) {
			v, ok := transfers.Load(u.Host)
			if !ok {
				return nil, errors.New("internal error: the transfer ended before its SSH connection was dialled")
			}
			return meterDialer{v.(*transfer)}, nil
		})
	})
}

// sshProxy routes an SSH transfer's connection through meterDialer; HTTP
// transfers are metered by the RoundTripper and must carry no proxy (see
// installTransports).
func (t *transfer) sshProxy(rawURL string) transport.ProxyOptions {
	if !isSSH(rawURL) {
		return transport.ProxyOptions{}
	}
	return transport.ProxyOptions{URL: meterScheme + "://" + t.id}
}

// meterDialer dials as go-git's SSH transport does without a proxy (honouring
// ALL_PROXY), but under the transfer's context, and counts what it reads.
type meterDialer struct{ t *transfer }

func (d meterDialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(d.t.ctx, network, addr)
}

// DialContext ignores the context go-git passes, which is a background one.
func (d meterDialer) DialContext(_ context.Context, network, addr string) (net.Conn, error) {
	conn, err := proxy.Dial(d.t.ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return d.t.track(conn), nil
}

// roundTripper bounds every response body and counts it toward its transfer.
type roundTripper struct {
	mu   sync.Mutex
	byCA map[[32]byte]*http.Transport
}

func (rt *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	t := transferFrom(req.Context())
	var ca []byte
	if t != nil {
		ca = t.ca
	}
	resp, err := rt.transport(ca).RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = newBoundedBody(resp, t)
	return resp, nil
}

// transport returns the shared transport trusting the system roots plus ca,
// as go-git's own CABundle handling does; one per CA keeps connections reused.
func (rt *roundTripper) transport(ca []byte) *http.Transport {
	key := sha256.Sum256(ca)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if tr, ok := rt.byCA[key]; ok {
		return tr
	}
	tr := newTransport(ca)
	if len(rt.byCA) >= maxTransportsByCA {
		// Rarely more CAs than this are in use at once; dropping all costs
		// only new connections.
		for k, old := range rt.byCA {
			old.CloseIdleConnections()
			delete(rt.byCA, k)
		}
	}
	rt.byCA[key] = tr
	return tr
}

func newTransport(ca []byte) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSHandshakeTimeout = 10 * time.Second
	// The low-speed check covers a server that stalls later; this is the
	// backstop for a server that accepts and never answers.
	tr.ResponseHeaderTimeout = time.Minute
	tr.MaxResponseHeaderBytes = 1 << 20
	if len(ca) > 0 {
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		roots.AppendCertsFromPEM(ca)
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{}
		}
		tr.TLSClientConfig.RootCAs = roots
	}
	return tr
}

// boundedBody fails a read past the response's own bound or the transfer's.
type boundedBody struct {
	io.ReadCloser
	t     *transfer
	n     int64
	limit int64
	over  func() *Error
	refs  bool      // whether this is a ref list (see waitForTurnIfLarge)
	head  *packHead // an upload-pack response's
}

func newBoundedBody(resp *http.Response, t *transfer) io.ReadCloser {
	b := &boundedBody{ReadCloser: resp.Body, t: t}
	doing := "reading from " + redact(resp.Request.URL.String())
	if t != nil {
		doing = t.doing
	}
	status := resp.Status
	switch {
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		b.limit = maxErrorBodyBytes
		b.over = func() *Error {
			return newError(ReasonLimitExceeded, nil, "%s: the server answered %q with a body over the limit of %s for an error",
				doing, status, formatBytes(maxErrorBodyBytes))
		}
	// By method, not path: go-git GETs the refs and POSTs for the pack, and
	// a redirect can give the endpoint any path (attacker review: a path
	// ending "%3F" made the POST's path end elsewhere, and went unbounded).
	case resp.Request.Method == http.MethodGet:
		b.limit, b.refs = maxAdvertisementBytes, true
		b.over = func() *Error { return refsOverLimit(doing) }
	case resp.Request.Method == http.MethodPost:
		b.head = newPackHead(doing, t != nil && t.shallow.Load())
	}
	return b
}

// Close tells the transfer that go-git has read its ref list, which it
// closes once parsed (see refListRead).
func (b *boundedBody) Close() error {
	if b.refs && b.t != nil {
		b.t.refListRead()
	}
	return b.ReadCloser.Close()
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.limit > 0 && int64(len(p)) > b.limit-b.n+1 {
		p = p[:b.limit-b.n+1]
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	var over *Error
	switch {
	case b.limit > 0 && b.n > b.limit:
		over = b.over()
	case b.head != nil:
		over = b.head.scan(p[:n])
	}
	if over != nil {
		if b.t != nil {
			return n, b.t.fail(over)
		}
		return n, over
	}
	if b.t != nil {
		if cerr := b.t.count(n); cerr != nil {
			return n, cerr
		}
		if b.refs {
			if werr := b.t.waitForTurnIfLarge(b.n); werr != nil {
				return n, werr
			}
		}
	}
	return n, err
}
