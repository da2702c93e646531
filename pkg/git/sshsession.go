package git

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"reflect"
	"sync"

	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// boundedSSH is go-git's SSH transport with each session's output bounded
// as boundedBody bounds an HTTP response: the ref advertisement to
// maxAdvertisementBytes, what precedes the pack to maxPackHeadBytes. The
// transfer's meter sees only the encrypted stream, where SSH's framing added
// up to 31% to real refs (a packet per ref, measured by a review), so it
// cannot tell where the refs end; and the transfer's limit,
// --max-fetch-bytes (256 MiB), is all go-git would then hold as refs.
type boundedSSH struct{ transport.Transport }

func (b boundedSSH) NewUploadPackSession(ep *transport.Endpoint, auth transport.AuthMethod) (transport.UploadPackSession, error) {
	t, err := transferOfProxy(ep.Proxy.URL)
	if err != nil {
		return nil, err
	}
	s, err := b.Transport.NewUploadPackSession(ep, auth)
	if err != nil {
		return nil, err
	}
	out, err := boundOutput(s, t)
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	return &refsEndMarker{UploadPackSession: s, out: out}, nil
}

// transferOfProxy is the transfer sshProxy named in an endpoint's proxy URL.
// An SSH connection made any other way would go unmetered: refused.
func transferOfProxy(proxyURL string) (*transfer, error) {
	u, err := url.Parse(proxyURL)
	if err == nil && u.Scheme == meterScheme {
		if v, ok := transfers.Load(u.Host); ok {
			return v.(*transfer), nil
		}
	}
	return nil, errors.New("internal error: an SSH session outside a metered transfer")
}

// boundOutput puts a sessionOutput in front of what go-git reads of s.
// go-git keeps it in the exported field Stdout of its session, a type of an
// internal package: reflection is the only way in. A go-git that changes it
// fails here, and every SSH test with it, rather than go unbounded.
func boundOutput(s transport.UploadPackSession, t *transfer) (*sessionOutput, error) {
	v := reflect.ValueOf(s)
	if v.Kind() == reflect.Pointer && !v.IsNil() && v.Elem().Kind() == reflect.Struct {
		f := v.Elem().FieldByName("Stdout")
		if f.IsValid() && f.CanSet() && f.Type() == reflect.TypeFor[io.Reader]() && !f.IsNil() {
			out := newSessionOutput(f.Interface().(io.Reader), t)
			f.Set(reflect.ValueOf(io.Reader(out)))
			return out, nil
		}
	}
	return nil, fmt.Errorf("internal error: cannot bound what go-git reads of an SSH session (%T)", s)
}

// refsEndMarker tells the session's output when go-git has read the refs.
type refsEndMarker struct {
	transport.UploadPackSession
	out *sessionOutput
}

func (s *refsEndMarker) AdvertisedReferences() (*packp.AdvRefs, error) {
	return s.AdvertisedReferencesContext(context.TODO())
}

func (s *refsEndMarker) AdvertisedReferencesContext(ctx context.Context) (*packp.AdvRefs, error) {
	defer s.out.refsRead()
	return s.UploadPackSession.AdvertisedReferencesContext(ctx)
}

// sessionOutput is an SSH session's output as go-git reads it, decrypted:
// the ref advertisement, then the upload-pack response. go-git reads the
// advertisement exactly, a pkt-line at a time, so the response's first byte
// is the first read after it.
type sessionOutput struct {
	from io.Reader
	t    *transfer

	// go-git may read from a goroutine of its own that outlives the call
	// (its reads honour a context that way).
	mu     sync.Mutex
	inRefs bool
	refs   int64
	head   *packHead
}

func newSessionOutput(from io.Reader, t *transfer) *sessionOutput {
	return &sessionOutput{from: from, t: t, inRefs: true, head: newPackHead(t.doing, t.shallow.Load())}
}

func (o *sessionOutput) Read(p []byte) (int, error) {
	n, err := o.from.Read(p)
	refs, over := o.follow(p[:n])
	if over != nil {
		return n, o.t.fail(over)
	}
	if werr := o.t.waitForTurnIfLarge(refs); werr != nil {
		return n, werr
	}
	return n, err
}

// follow bounds what p adds to the session's output, and returns how much
// of the ref list has been read (0 once it has all been).
func (o *sessionOutput) follow(p []byte) (int64, *Error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.inRefs {
		return 0, o.head.scan(p)
	}
	o.refs += int64(len(p))
	if o.refs > maxAdvertisementBytes {
		return o.refs, refsOverLimit(o.t.doing)
	}
	return o.refs, nil
}

func (o *sessionOutput) refsRead() {
	o.mu.Lock()
	o.inRefs = false
	o.mu.Unlock()
	o.t.refListRead()
}
