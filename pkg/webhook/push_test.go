package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// testSecret signs every delivery in these tests.
const testSecret = "It's a Secret to Everybody"

// sigFormat is how one provider authenticates a request: a header holding
// either the secret itself (token) or prefix + the hex HMAC-SHA256 of the
// body.
type sigFormat struct {
	header string
	prefix string
	token  bool
}

var testSigFormats = map[string]sigFormat{
	"github":           {header: "X-Hub-Signature-256", prefix: "sha256="},
	"gitlab":           {header: "X-Gitlab-Token", token: true},
	"gitea":            {header: "X-Gitea-Signature"},
	"bitbucket":        {header: "X-Hub-Signature", prefix: "sha256="},
	"bitbucket-server": {header: "X-Hub-Signature", prefix: "sha256="},
	"generic":          {header: "X-Signature-256", prefix: "sha256="},
}

// value is the header value a sender puts on body.
func (f sigFormat) value(body, secret []byte) string {
	if f.token {
		return string(secret)
	}
	return f.prefix + testHexMAC(body, secret)
}

// accepts is the oracle for verify: whether value authenticates body.
func (f sigFormat) accepts(value string, body, secret []byte) bool {
	if len(secret) == 0 {
		return false
	}
	if f.token {
		return value == string(secret)
	}
	sig, ok := strings.CutPrefix(value, f.prefix)
	return ok && strings.EqualFold(sig, testHexMAC(body, secret))
}

func testHexMAC(body, secret []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// readPayload reads testdata/payloads/name.
func readPayload(t testing.TB, name string) []byte {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", "payloads", name))
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// seedPayloads reads every testdata/payloads file whose name starts with
// prefix, for a fuzz target's seed corpus.
func seedPayloads(t testing.TB, prefix string) [][]byte {
	t.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", "payloads", prefix+"*.json"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no seed payloads %s*.json: %v", prefix, err)
	}
	var bodies [][]byte
	for _, name := range names {
		bodies = append(bodies, readPayload(t, filepath.Base(name)))
	}
	return bodies
}

// checkPushInvariants fails t when what a parser returned breaks what Push
// and provider.parse document, whatever the input was.
func checkPushInvariants(t testing.TB, name string, p *Push, err error) {
	t.Helper()
	if err != nil {
		// An ignored event may name its repository (URLs only), so that a
		// per-repository secret can verify it; nothing else comes with an error.
		if p != nil && (!errors.Is(err, ErrIgnoredEvent) || len(p.Changes) != 0 || p.Ping) {
			t.Errorf("parse returned both a Push %+v and %v", p, err)
		}
		if !errors.Is(err, ErrIgnoredEvent) && !errors.Is(err, ErrMalformed) {
			t.Errorf("error is neither ErrIgnoredEvent nor ErrMalformed: %v", err)
		}
		return
	}
	if p == nil {
		t.Fatal("parse returned neither a Push nor an error")
	}
	if p.Provider != name {
		t.Errorf("Provider = %q, want %q", p.Provider, name)
	}
	if len(p.DeliveryID) > maxDeliveryID {
		t.Errorf("DeliveryID is %d bytes", len(p.DeliveryID))
	}
	for _, c := range []byte(p.DeliveryID) {
		if c <= ' ' || c >= 0x7f {
			t.Errorf("DeliveryID %q has byte %#x", p.DeliveryID, c)
		}
	}
	if p.Ping && p.Changes != nil {
		t.Errorf("ping carries changes %+v", p.Changes)
	}
	if (len(p.URLs) == 0 && !p.Ping) || len(p.URLs) > maxPushURLs {
		t.Errorf("%d URLs", len(p.URLs))
	}
	seen := map[string]bool{}
	for _, u := range p.URLs {
		if len(u) > maxURLBytes || MatchKey(u) == "" || seen[u] {
			t.Errorf("URL %q is too long, no repository URL or repeated", u)
		}
		seen[u] = true
	}
	if len(p.Changes) > maxPushChanges {
		t.Errorf("%d changes", len(p.Changes))
	}
	for _, c := range p.Changes {
		if !followedRef(c.Ref) || checkRefName("ref", c.Ref) != nil {
			t.Errorf("change ref %q is not a branch or tag", c.Ref)
		}
		if c.Deleted != (c.Commit == "") {
			t.Errorf("change %+v: Deleted and an empty Commit disagree", c)
		}
		if !c.Deleted && (len(c.Commit) != 40 || strings.Trim(c.Commit, "0123456789abcdef") != "") {
			t.Errorf("change commit %q is not 40 lowercase hex", c.Commit)
		}
	}
}

// parseCase is one delivery to a provider's parse and what it should give.
type parseCase struct {
	name    string
	headers map[string]string
	payload string // file under testdata/payloads; body when empty
	body    string
	want    *Push
	wantErr error  // ErrIgnoredEvent or ErrMalformed
	errHas  string // a part of the error's text
}

// runParseCases signs each case's body as the provider would, checks that
// verify accepts it, then parses it.
func runParseCases(t *testing.T, name string, cases []parseCase) {
	t.Helper()
	prov := providers[name]
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			if tc.payload != "" {
				body = readPayload(t, tc.payload)
			}
			h := http.Header{}
			for k, v := range tc.headers {
				h.Set(k, v)
			}
			if _, ok := tc.headers[testSigFormats[name].header]; !ok {
				h.Set(testSigFormats[name].header, testSigFormats[name].value(body, []byte(testSecret)))
			}
			if !prov.verify(h, body, []byte(testSecret)) {
				t.Fatal("verify rejects a correctly signed delivery")
			}

			got, err := prov.parse(h, body)
			checkPushInvariants(t, name, got, err)
			if tc.wantErr != nil || err != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(errString(err), tc.errHas) {
					t.Fatalf("error = %v, want %v containing %q", err, tc.wantErr, tc.errHas)
				}
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parse =\n  %+v\nwant\n  %+v", *got, *tc.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestProvidersRegistered(t *testing.T) {
	want := []string{"github", "gitlab", "gitea", "bitbucket", "bitbucket-server", "generic"}
	if len(providers) != len(want) {
		t.Errorf("%d providers, want %d", len(providers), len(want))
	}
	for _, name := range want {
		p := providers[name]
		if p == nil || p.name != name || p.verify == nil || p.parse == nil {
			t.Errorf("provider %q is missing or incomplete: %+v", name, p)
		}
		if _, ok := testSigFormats[name]; !ok {
			t.Errorf("no test signature format for %q", name)
		}
	}
}

// TestVerifyProviders checks every provider's verify against the same
// forgeries; gitea_test.go and gitlab_test.go add their own header forms.
func TestVerifyProviders(t *testing.T) {
	body := readPayload(t, "github-push.json")
	secret := []byte(testSecret)
	for name, format := range testSigFormats {
		t.Run(name, func(t *testing.T) {
			verify := providers[name].verify
			signed := func(value string) http.Header {
				h := http.Header{}
				h.Set(format.header, value)
				return h
			}
			good := format.value(body, secret)
			if !verify(signed(good), body, secret) {
				t.Fatal("a correct signature does not verify")
			}
			cases := map[string]struct {
				h      http.Header
				body   []byte
				secret []byte
			}{
				"wrong secret":   {signed(format.value(body, []byte("another secret"))), body, secret},
				"missing header": {http.Header{}, body, secret},
				"empty header":   {signed(""), body, secret},
				"empty secret":   {signed(format.value(body, nil)), body, nil},
				"secret prefix":  {signed(format.value(body, secret[:5])), body, secret},
				"other header":   {http.Header{"X-Unrelated": {good}}, body, secret},
			}
			if !format.token {
				// A token does not cover the body; that is GitLab's design.
				cases["tampered body"] = struct {
					h      http.Header
					body   []byte
					secret []byte
				}{signed(good), append([]byte(" "), body...), secret}
				sig := testHexMAC(body, secret)
				for bad, value := range map[string]string{
					"truncated":       good[:len(good)-2],
					"extended":        good + "00",
					"not hex":         format.prefix + strings.Repeat("zz", 32),
					"sha1 prefix":     "sha1=" + sig,
					"prefix only":     format.prefix,
					"spaces":          format.prefix + " " + sig,
					"other body's":    format.value([]byte("{}"), secret),
					"doubled prefix":  "sha256=sha256=" + sig,
					"wrong algorithm": format.prefix + testHexMAC(body, secret)[:40],
				} {
					cases[bad] = struct {
						h      http.Header
						body   []byte
						secret []byte
					}{signed(value), body, secret}
				}
			}
			for what, tc := range cases {
				if verify(tc.h, tc.body, tc.secret) {
					t.Errorf("%s: verify = true", what)
				}
			}
		})
	}
}

func TestParseDeliveryID(t *testing.T) {
	for id, want := range map[string]string{
		"72d3162e-cc78-11e3-81ab-4c9367dc0958":   "72d3162e-cc78-11e3-81ab-4c9367dc0958",
		"{8e3c2a10-5d4f-4b3a-9e2c-1f0a7b6c5d4e}": "{8e3c2a10-5d4f-4b3a-9e2c-1f0a7b6c5d4e}",
		"":                                       "",
		"two words":                              "",
		"line\nbreak":                            "",
		"ünïcode":                                "",
		strings.Repeat("a", maxDeliveryID):       strings.Repeat("a", maxDeliveryID),
		strings.Repeat("a", maxDeliveryID+1):     "",
	} {
		h := http.Header{"X-Github-Delivery": {id}}
		if got := deliveryID(h, "X-GitHub-Delivery"); got != want {
			t.Errorf("deliveryID(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestParseRefAndCommitRules(t *testing.T) {
	for _, tc := range []struct {
		u       refUpdate
		want    Change
		keep    bool
		errHas  string
		comment string
	}{
		{u: refUpdate{ref: "refs/heads/main", commit: strings.Repeat("AB", 20)}, want: Change{Ref: "refs/heads/main", Commit: strings.Repeat("ab", 20)}, keep: true},
		{u: refUpdate{ref: "refs/tags/v1.0", commit: zeroCommit}, want: Change{Ref: "refs/tags/v1.0", Deleted: true}, keep: true},
		{u: refUpdate{ref: "refs/heads/gone", commit: "junk", deleted: true}, want: Change{Ref: "refs/heads/gone", Deleted: true}, keep: true, comment: "a deletion's commit is not read"},
		{u: refUpdate{ref: "refs/heads/feature/ümlaut", commit: strings.Repeat("1", 40)}, want: Change{Ref: "refs/heads/feature/ümlaut", Commit: strings.Repeat("1", 40)}, keep: true},
		{u: refUpdate{ref: "refs/pull/7/head", commit: "junk"}, comment: "not followed, dropped before the commit is read"},
		{u: refUpdate{ref: "refs/merge-requests/3/head", commit: strings.Repeat("1", 40)}},
		{u: refUpdate{ref: "refs/notes/commits", commit: strings.Repeat("1", 40)}},
		{u: refUpdate{ref: "refs/heads", commit: strings.Repeat("1", 40)}},
		{u: refUpdate{refField: "r", ref: ""}, errHas: "r: missing"},
		{u: refUpdate{refField: "r", ref: "main"}, errHas: "not a full ref name"},
		{u: refUpdate{refField: "r", ref: "refs/heads/"}, errHas: "not a valid ref name"},
		{u: refUpdate{refField: "r", ref: "refs/heads/a..b"}, errHas: "not a valid ref name"},
		{u: refUpdate{refField: "r", ref: "refs/heads/a b"}, errHas: "not a valid ref name"},
		{u: refUpdate{refField: "r", ref: "refs/heads/a\x00b"}, errHas: "not a valid ref name"},
		{u: refUpdate{refField: "r", ref: "refs/heads/a~1"}, errHas: "not a valid ref name"},
		{u: refUpdate{refField: "r", ref: "refs/heads/x.lock"}, errHas: "not a valid ref name"},
		{u: refUpdate{refField: "r", ref: "refs/heads/.hidden"}, errHas: "not a valid ref name"},
		{u: refUpdate{refField: "r", ref: "refs/heads/x@{1}"}, errHas: "not a valid ref name"},
		{u: refUpdate{refField: "r", ref: "refs/heads//x"}, errHas: "not a valid ref name"},
		{u: refUpdate{refField: "r", ref: "refs/heads/" + strings.Repeat("a", maxRefBytes)}, errHas: "bytes long"},
		{u: refUpdate{ref: "refs/heads/main", commitField: "c", commit: ""}, errHas: "c: missing"},
		{u: refUpdate{ref: "refs/heads/main", commitField: "c", commit: strings.Repeat("g", 40)}, errHas: "c: \"gggg"},
		{u: refUpdate{ref: "refs/heads/main", commitField: "c", commit: strings.Repeat("a", 64)}, errHas: "not a 40-digit hex commit id"},
		{u: refUpdate{ref: "refs/heads/main", commitField: "c", commit: strings.Repeat("a", 39)}, errHas: "not a 40-digit hex commit id"},
	} {
		got, keep, err := tc.u.change()
		if tc.errHas != "" {
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("%+v: error = %v, want ErrMalformed containing %q", tc.u, err, tc.errHas)
			}
			continue
		}
		if err != nil || keep != tc.keep || got != tc.want {
			t.Errorf("%+v (%s): = %+v, %v, %v; want %+v, %v", tc.u, tc.comment, got, keep, err, tc.want, tc.keep)
		}
	}
}

func TestParseLimits(t *testing.T) {
	long := "https://github.com/octo-org/" + strings.Repeat("x", maxURLBytes)
	urls, err := collectURLs(long, "", "not a url", "https://github.com/octo-org/a.git", "https://github.com/octo-org/a.git")
	if err != nil || !reflect.DeepEqual(urls, []string{"https://github.com/octo-org/a.git"}) {
		t.Errorf("collectURLs = %q, %v; want the one repository URL", urls, err)
	}
	if _, err := collectURLs(long, "not a url"); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "payload names no repository URL") {
		t.Errorf("collectURLs without a repository URL: %v", err)
	}
	var many []string
	for i := range maxPushURLs + 1 {
		many = append(many, "https://example.com/r/"+strings.Repeat("x", i+1))
	}
	if _, err := collectURLs(many...); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "17 repository URLs") {
		t.Errorf("collectURLs of %d URLs: %v", len(many), err)
	}
	if err := checkChangeCount("changes", maxPushChanges); err != nil {
		t.Errorf("%d changes: %v", maxPushChanges, err)
	}
	if err := checkChangeCount("changes", maxPushChanges+1); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "changes: 65 changes") {
		t.Errorf("%d changes: %v", maxPushChanges+1, err)
	}
}

func TestParseJSONErrorsNameTheField(t *testing.T) {
	var p bitbucketPushPayload
	for body, want := range map[string]string{
		`{"push":{"changes":[{"new":{"target":{"hash":5}}}]}}`: "push.changes.new.target.hash: want a string, got JSON number",
		`{"push":{"changes":{}}}`:                              "push.changes: want an array, got JSON object",
		`[]`:                                                   "body: want an object, got JSON array",
		`{"push":`:                                             "body is not JSON",
		`{} {}`:                                                "body is not JSON",
		``:                                                     "body is not JSON",
	} {
		err := decodePayload([]byte(body), &p)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), want) {
			t.Errorf("decodePayload(%s) = %v, want ErrMalformed containing %q", body, err, want)
		}
	}
}

// fuzzProvider runs parse and verify on arbitrary bodies, event headers and
// signatures. The selector picks the event among events and, when a provider
// has several event headers, which header carries it.
func fuzzProvider(f *testing.F, name string, eventHeaders, events []string) {
	format := testSigFormats[name]
	secret := []byte(testSecret)
	for _, body := range seedPayloads(f, name+"-") {
		for sel := range len(events) * max(len(eventHeaders), 1) {
			f.Add(uint8(sel), format.value(body, secret), body)
		}
		f.Add(uint8(0), "", body)
	}
	f.Fuzz(func(t *testing.T, sel uint8, sig string, body []byte) {
		h := http.Header{}
		if len(eventHeaders) > 0 {
			h.Set(eventHeaders[int(sel)/len(events)%len(eventHeaders)], events[int(sel)%len(events)])
		}
		h.Set(format.header, sig)
		if got, want := providers[name].verify(h, body, secret), format.accepts(sig, body, secret); got != want {
			t.Errorf("verify(%q) = %v, want %v", sig, got, want)
		}
		p, err := providers[name].parse(h, body)
		checkPushInvariants(t, name, p, err)
	})
}
