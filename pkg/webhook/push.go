package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
)

// Push is what one delivery says was pushed.
type Push struct {
	// Provider is the name the delivery came in under, a key of providers.
	Provider string
	// DeliveryID is the provider's delivery id header, "" if none or if it
	// is longer than 128 bytes or not printable ASCII: it ends up in status
	// and logs.
	DeliveryID string
	// URLs are every clone-URL form the payload carries (https, ssh://,
	// scp-like), raw and deduplicated. Each has a MatchKey; at most 16, and
	// at least one unless Ping.
	URLs []string
	// Changes are one per updated branch or tag, at most 64. Refs outside
	// refs/heads/ and refs/tags/ are left out, so a push may have none.
	Changes []Change
	// Ping is a ping or test event: answered 200, it triggers nothing and
	// carries no Changes. Its URLs, when the provider's ping names the
	// repository, let a per-repository secret verify it; they may be none.
	Ping bool
}

// Change is one ref a push moved.
type Change struct {
	// Ref is the full ref name: refs/heads/main or refs/tags/v1.0.
	Ref string
	// Commit is the new commit, 40 lowercase hex; "" when Deleted.
	Commit string
	// Deleted is set when the push removed Ref.
	Deleted bool
}

// provider knows one sender's headers, signature and payload.
type provider struct {
	name string
	// verify reports, in constant time, whether the request is signed (or
	// carries the token) for secret.
	verify func(h http.Header, body []byte, secret []byte) bool
	// parse reads a verified request. It returns ErrIgnoredEvent (wrapped,
	// naming the event) for an event that is neither a push nor a ping,
	// with a Push carrying only the URLs when the event names its
	// repository (so a per-repository secret can verify it), and
	// an error wrapping ErrMalformed that says what is wrong for a body that
	// is not the expected JSON.
	parse func(h http.Header, body []byte) (*Push, error)
}

// providers by the last segment of their path, /hooks/<name>.
var providers = map[string]*provider{
	githubName:          githubProvider,
	gitlabName:          gitlabProvider,
	giteaName:           giteaProvider,
	bitbucketName:       bitbucketProvider,
	bitbucketServerName: bitbucketServerProvider,
	genericName:         genericProvider,
}

// The provider names, which are also Push.Provider and the status's
// PushRecord.Provider.
const (
	githubName          = "github"
	gitlabName          = "gitlab"
	giteaName           = "gitea"
	bitbucketName       = "bitbucket"
	bitbucketServerName = "bitbucket-server"
	genericName         = "generic"
)

// ErrIgnoredEvent is returned by a parser for a verified event that is
// neither a push nor a ping; the caller acknowledges it and does nothing.
var ErrIgnoredEvent = errors.New("ignored event")

// ErrMalformed is returned by a parser for a request it cannot read: a body
// that is not the expected JSON, a missing event header, a field that is not
// what the provider documents, or a push that exceeds the limits below.
var ErrMalformed = errors.New("malformed push")

// Limits on what one delivery may carry. A real push stays far below them;
// a payload with more changes or URLs is refused whole rather than
// half-read, an overlong URL is dropped and an overlong delivery id ignored.
const (
	maxPushChanges = 64
	maxPushURLs    = 16
	maxURLBytes    = 2048
	maxRefBytes    = 1024
	maxDeliveryID  = 128
	// maxQuotedBytes is how much of a sender's string an error repeats.
	maxQuotedBytes = 64
)

const (
	// zeroCommit is git's new value for a deleted ref.
	zeroCommit      = "0000000000000000000000000000000000000000"
	branchRefPrefix = "refs/heads/"
	tagRefPrefix    = "refs/tags/"
)

// malformed says what is wrong with one field of a payload.
func malformed(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrMalformed, field, fmt.Sprintf(format, args...))
}

// ignoredEvent names the event a parser will not act on.
func ignoredEvent(event string) error {
	return fmt.Errorf("%w %s", ErrIgnoredEvent, quoteUntrusted(event))
}

// missingEventHeader is a signed request that does not say what it is.
func missingEventHeader(names ...string) error {
	return fmt.Errorf("%w: no %s header", ErrMalformed, strings.Join(names, " or "))
}

// quoteUntrusted quotes a sender's string for an error message, cut short so
// a hostile header or field cannot flood a log.
func quoteUntrusted(s string) string {
	if len(s) > maxQuotedBytes {
		return fmt.Sprintf("%q...", s[:maxQuotedBytes])
	}
	return fmt.Sprintf("%q", s)
}

// firstHeader is the first non-empty value among names.
func firstHeader(h http.Header, names ...string) string {
	for _, name := range names {
		if v := h.Get(name); v != "" {
			return v
		}
	}
	return ""
}

// deliveryID is the first delivery header present, or "" when it is too
// long or holds anything but printable ASCII: the id is copied into status
// and logs, where a sender must not be able to write arbitrary bytes.
func deliveryID(h http.Header, names ...string) string {
	id := firstHeader(h, names...)
	if len(id) > maxDeliveryID {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] >= 0x7f {
			return ""
		}
	}
	return id
}

// bodyMAC is the HMAC-SHA256 of body under secret, or nil for an empty
// secret: an unset secret must never verify anything.
func bodyMAC(body, secret []byte) []byte {
	if len(secret) == 0 {
		return nil
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return mac.Sum(nil)
}

// hexMACMatches reports whether sig is the hex form of want. hmac.Equal
// takes the same time whatever bytes differ; the length it returns early on
// is public.
func hexMACMatches(want []byte, sig string) bool {
	if want == nil || len(sig) != hex.EncodedLen(sha256.Size) {
		return false
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	return hmac.Equal(want, got)
}

// prefixedMACMatches is hexMACMatches for the "sha256=<hex>" form GitHub
// introduced and Bitbucket and the generic provider copy.
func prefixedMACMatches(want []byte, value string) bool {
	sig, ok := strings.CutPrefix(value, "sha256=")
	return ok && hexMACMatches(want, sig)
}

// verifyPrefixedHeader returns a verify func for a provider that sends
// "sha256=<hex HMAC-SHA256 of body>" in header.
func verifyPrefixedHeader(header string) func(http.Header, []byte, []byte) bool {
	return func(h http.Header, body, secret []byte) bool {
		return prefixedMACMatches(bodyMAC(body, secret), h.Get(header))
	}
}

// decodePayload unmarshals body into v, turning encoding/json's errors into
// ErrMalformed ones that name the JSON field rather than the Go type.
func decodePayload(body []byte, v any) error {
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		return malformed(field, "want %s, got JSON %s at byte %d", jsonKind(typeErr.Type), typeErr.Value, typeErr.Offset)
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return fmt.Errorf("%w: body is not JSON: %v at byte %d", ErrMalformed, syntaxErr, syntaxErr.Offset)
	}
	return fmt.Errorf("%w: body is not JSON: %v", ErrMalformed, err)
}

// jsonKind names the JSON type a Go type decodes from.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "a value"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return jsonKind(t.Elem())
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	default:
		return "a number"
	}
}

// collectURLs keeps the URLs that are repository URLs (MatchKey is not ""),
// at most maxURLBytes long, without repeats and in payload order. A push that
// names no repository cannot trigger anything, so it is malformed.
func collectURLs(raws ...string) ([]string, error) {
	var urls []string
	for _, raw := range raws {
		if raw == "" || len(raw) > maxURLBytes || slices.Contains(urls, raw) || MatchKey(raw) == "" {
			continue
		}
		urls = append(urls, raw)
	}
	if len(urls) == 0 {
		return nil, fmt.Errorf("%w: payload names no repository URL", ErrMalformed)
	}
	if len(urls) > maxPushURLs {
		return nil, fmt.Errorf("%w: payload names %d repository URLs, at most %d", ErrMalformed, len(urls), maxPushURLs)
	}
	return urls, nil
}

// checkChangeCount refuses a payload with more ref changes than a push to
// one repository plausibly makes, before any of them is read.
func checkChangeCount(field string, n int) error {
	if n > maxPushChanges {
		return malformed(field, "%d changes, at most %d", n, maxPushChanges)
	}
	return nil
}

// refUpdate is one ref change as a payload states it, before validation.
type refUpdate struct {
	refField    string
	ref         string
	commitField string
	commit      string
	deleted     bool
}

// change validates u. A ref that is not a well-formed git ref name, or a
// commit that is not 40 hex digits, is ErrMalformed naming the field. A ref
// outside refs/heads/ and refs/tags/ (a merge-request ref, a note) is no
// source a GitRepository can follow: keep is false and the change is
// dropped, so the rest of the push still counts. A commit of forty zeros is
// git's way of saying deleted.
func (u refUpdate) change() (c Change, keep bool, err error) {
	if err := checkRefName(u.refField, u.ref); err != nil {
		return Change{}, false, err
	}
	if !followedRef(u.ref) {
		return Change{}, false, nil
	}
	if u.deleted || u.commit == zeroCommit {
		return Change{Ref: u.ref, Deleted: true}, true, nil
	}
	commit, err := checkCommit(u.commitField, u.commit)
	if err != nil {
		return Change{}, false, err
	}
	return Change{Ref: u.ref, Commit: commit}, true, nil
}

// validChanges validates updates in order, dropping those change drops.
func validChanges(updates []refUpdate) ([]Change, error) {
	var out []Change
	for _, u := range updates {
		c, keep, err := u.change()
		if err != nil {
			return nil, err
		}
		if keep {
			out = append(out, c)
		}
	}
	return out, nil
}

// followedRef reports whether ref is a branch or a tag.
func followedRef(ref string) bool {
	name, ok := strings.CutPrefix(ref, branchRefPrefix)
	if !ok {
		name, ok = strings.CutPrefix(ref, tagRefPrefix)
	}
	return ok && name != ""
}

// checkCommit returns commit lowercased if it is 40 hex digits.
func checkCommit(field, commit string) (string, error) {
	if commit == "" {
		return "", malformed(field, "missing")
	}
	if len(commit) != 40 {
		return "", malformed(field, "%s is not a 40-digit hex commit id", quoteUntrusted(commit))
	}
	for i := 0; i < len(commit); i++ {
		switch c := commit[i]; {
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return "", malformed(field, "%s is not a 40-digit hex commit id", quoteUntrusted(commit))
		}
	}
	return strings.ToLower(commit), nil
}

// checkRefName applies git check-ref-format's rules to a full ref name
// (refs/...), so what reaches status, logs and a fetch refspec is a ref git
// itself could have made.
func checkRefName(field, ref string) error {
	switch {
	case ref == "":
		return malformed(field, "missing")
	case len(ref) > maxRefBytes:
		return malformed(field, "%d bytes long, at most %d", len(ref), maxRefBytes)
	case !strings.HasPrefix(ref, "refs/"):
		return malformed(field, "%s is not a full ref name (refs/...)", quoteUntrusted(ref))
	case strings.Contains(ref, ".."), strings.Contains(ref, "@{"), strings.Contains(ref, "//"),
		strings.HasSuffix(ref, "/"), strings.HasSuffix(ref, "."):
		return malformed(field, "%s is not a valid ref name", quoteUntrusted(ref))
	}
	for i := 0; i < len(ref); i++ {
		if c := ref[i]; c < 0x20 || c == 0x7f || strings.IndexByte(" ~^:?*[\\", c) >= 0 {
			return malformed(field, "%s is not a valid ref name", quoteUntrusted(ref))
		}
	}
	for part := range strings.SplitSeq(ref, "/") {
		if strings.HasPrefix(part, ".") || strings.HasSuffix(part, ".lock") {
			return malformed(field, "%s is not a valid ref name", quoteUntrusted(ref))
		}
	}
	return nil
}
