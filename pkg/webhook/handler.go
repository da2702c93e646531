package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
)

const (
	defaultMaxBodyBytes  = 1 << 20
	defaultRatePerSecond = 10
	defaultBurst         = 20
	defaultSecretTTL     = 10 * time.Second

	// maxSecretsPerRequest bounds the Secrets one request may make the
	// receiver read and check, however many GitRepositories share its URL,
	// and maxSecretsPerNamespace those of one namespace, so a tenant's many
	// GitRepositories on a victim's URL cannot use up the whole budget.
	maxSecretsPerRequest   = 64
	maxSecretsPerNamespace = 4

	hooksPrefix = "/hooks/"
)

// Messages a sender acts on; tests compare against them.
const (
	msgUnauthorized = "the signature matches no secret that applies to this repository: neither the platform secret (--webhook-secret) nor a spec.webhook.secretRef of a GitRepository on these URLs"
	msgAllSkipped   = "every matching GitRepository was skipped"
	msgCapped       = "only the first 64 distinct webhook Secrets were checked; GitRepositories naming other Secrets were not considered"
)

// Options configure the receiver.
type Options struct {
	// Repositories returns the GitRepositories whose spec.url has this
	// MatchKey (from an informer index). Required.
	Repositories func(matchKey string) []*v1alpha1.GitRepository
	// Secret reads a Secret's data; the receiver caches answers for
	// SecretTTL, including NotFound errors. Required.
	Secret func(ctx context.Context, namespace, name string) (map[string][]byte, error)
	// Trigger records the push on the GitRepository and makes its worker
	// sync now. It must not block. Required.
	Trigger func(repo *v1alpha1.GitRepository, push v1alpha1.PushRecord)
	// PlatformSecret names the platform-wide Secret (--webhook-secret); the
	// zero value means none. It holds one key per provider name: github,
	// gitlab, gitea, bitbucket, bitbucket-server and generic.
	PlatformSecret types.NamespacedName
	// MaxBodyBytes bounds a request's body. Defaults to 1 MiB.
	MaxBodyBytes int64
	// RatePerSecond is the requests allowed per second from one source
	// address, with bursts of up to Burst. Defaults are 10 and 20.
	RatePerSecond float64
	Burst         int
	// SecretTTL is how long a Secret read is reused. Defaults to 10s.
	SecretTTL time.Duration
	// Now tells the time; tests set it. Defaults to time.Now.
	Now func() time.Time
}

// handler serves /hooks/<provider>.
type handler struct {
	opts    Options
	secrets *secretCache
	limiter *sourceLimiter
}

// NewHandler returns the push webhook receiver, serving /hooks/<provider>
// for each provider. It panics if Repositories, Secret or Trigger is nil.
func NewHandler(opts Options) http.Handler {
	if opts.Repositories == nil || opts.Secret == nil || opts.Trigger == nil {
		panic("webhook.NewHandler: Options.Repositories, Secret and Trigger are required")
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = defaultMaxBodyBytes
	}
	if opts.RatePerSecond <= 0 {
		opts.RatePerSecond = defaultRatePerSecond
	}
	if opts.Burst <= 0 {
		opts.Burst = defaultBurst
	}
	if opts.SecretTTL <= 0 {
		opts.SecretTTL = defaultSecretTTL
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &handler{
		opts:    opts,
		secrets: newSecretCache(opts.Secret, opts.SecretTTL, opts.Now),
		limiter: newSourceLimiter(opts.RatePerSecond, opts.Burst, opts.Now),
	}
}

// reply is a whole answer. It is written only once the request has been
// handled, so a panic midway can still be answered with a clean 500.
type reply struct {
	status int
	result string
	header http.Header
	body   any
}

// pushAnswer is the body of every answer to an authenticated delivery.
type pushAnswer struct {
	Provider  string          `json:"provider"`
	Delivery  string          `json:"delivery"`
	Triggered []triggeredRepo `json:"triggered"`
	Skipped   []skippedRepo   `json:"skipped"`
	Message   string          `json:"message,omitempty"`
}

type triggeredRepo struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Ref       string `json:"ref"`
	Commit    string `json:"commit"`
}

type skippedRepo struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Reason    string `json:"reason"`
}

// errorAnswer is the body of every refusal.
type errorAnswer struct {
	Error   string `json:"error"`
	Message string `json:"message,omitempty"`
}

func refuse(status int, result, format string, args ...any) reply {
	return reply{status: status, result: result, body: errorAnswer{Error: fmt.Sprintf(format, args...)}}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var p *provider
	if name, ok := strings.CutPrefix(r.URL.Path, hooksPrefix); ok {
		p = providers[name]
	}
	label := unknownProvider
	if p != nil {
		label = p.name
	}
	rep := h.serveRecovering(w, r, p)
	requestsTotal.WithLabelValues(label, rep.result).Inc()
	requestDuration.WithLabelValues(label).Observe(time.Since(start).Seconds())
	rep.write(w)
}

func (h *handler) serveRecovering(w http.ResponseWriter, r *http.Request, p *provider) (rep reply) {
	defer func() {
		if !logPanic(recover(), r.URL.Path) {
			return
		}
		rep = refuse(http.StatusInternalServerError, resultError, "internal error while handling the webhook; alumiini's log says more")
	}()
	return h.serve(w, r, p)
}

func (h *handler) serve(w http.ResponseWriter, r *http.Request, p *provider) reply {
	received := h.opts.Now()
	if ok, wait := h.limiter.allow(r); !ok {
		seconds := retryAfterSeconds(wait)
		rep := refuse(http.StatusTooManyRequests, resultRateLimited, "too many requests from this source address; retry after %d seconds", seconds)
		rep.header = http.Header{"Retry-After": {strconv.Itoa(seconds)}}
		return rep
	}
	if p == nil {
		return refuse(http.StatusNotFound, resultNotFound, "no webhook receiver at %s: use /hooks/<provider>, where provider is one of %s",
			quoteUntrusted(r.URL.Path), strings.Join(providerNames(), ", "))
	}
	if r.Method != http.MethodPost {
		rep := refuse(http.StatusMethodNotAllowed, resultBadMethod, "webhooks are delivered with POST, not %s", r.Method)
		rep.header = http.Header{"Allow": {http.MethodPost}}
		return rep
	}
	if mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mediaType != "application/json" {
		return refuse(http.StatusUnsupportedMediaType, resultBadContentType,
			"the body must be JSON, not %s: configure the webhook to send Content-Type application/json", quoteUntrusted(r.Header.Get("Content-Type")))
	}
	body, rep, ok := h.readBody(w, r)
	if !ok {
		return rep
	}
	d := &delivery{h: h, p: p, header: r.Header, body: body, received: received,
		log: klog.FromContext(r.Context()).WithValues("provider", p.name)}
	return d.handle(r.Context())
}

func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, reply, bool) {
	limit := h.opts.MaxBodyBytes
	tooLarge := func() ([]byte, reply, bool) {
		return nil, refuse(http.StatusRequestEntityTooLarge, resultTooLarge, "the body is larger than the limit of %d bytes", limit), false
	}
	if r.ContentLength > limit {
		return tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return tooLarge()
	}
	if err != nil {
		return nil, refuse(http.StatusBadRequest, resultError, "reading the body: %v", err), false
	}
	return body, reply{}, true
}

// delivery is one authenticated-or-not push being handled.
type delivery struct {
	h        *handler
	p        *provider
	header   http.Header
	body     []byte
	received time.Time
	// log carries the provider and, once parsed, the delivery id.
	log klog.Logger
}

// authorization is what the signature of a delivery allows.
type authorization struct {
	// platform is true when the platform secret verifies: every candidate
	// is authorized.
	platform bool
	// repos are the authorized candidates, sorted by namespace/name.
	repos []*v1alpha1.GitRepository
	// capped is true when some candidates were not checked, past
	// maxSecretsPerRequest distinct Secrets.
	capped bool
	// readFailed is true when a Secret could not be read, so the signature
	// could not be checked against it.
	readFailed bool
}

func (a *authorization) verified() bool { return a.platform || len(a.repos) > 0 }

func (d *delivery) handle(ctx context.Context) reply {
	push, parseErr := d.p.parse(d.header, d.body)
	if parseErr != nil && !errors.Is(parseErr, ErrIgnoredEvent) {
		// Malformed, or a parser error that names no class: the body is
		// at fault either way.
		return refuse(http.StatusBadRequest, resultMalformed, "%v", parseErr)
	}
	var urls []string
	answer := pushAnswer{Provider: d.p.name, Triggered: []triggeredRepo{}, Skipped: []skippedRepo{}}
	if push != nil {
		urls = push.URLs
		answer.Delivery = push.DeliveryID
		d.log = d.log.WithValues("delivery", push.DeliveryID)
	}
	candidates, keys := d.candidates(urls)
	auth := d.authorize(ctx, candidates)
	if !auth.verified() {
		return d.unauthorized(auth, keys)
	}

	switch {
	case parseErr != nil:
		answer.Message = parseErr.Error() + ": only push and ping events trigger syncs"
		return reply{status: http.StatusAccepted, result: resultIgnoredEvent, body: answer}
	case push.Ping:
		answer.Message = "pong"
		return reply{status: http.StatusOK, result: resultPing, body: answer}
	case len(auth.repos) == 0:
		answer.Message = fmt.Sprintf("matched no GitRepository: none has a spec.url matching %s (push to %s)",
			orNone(keys), orNone(changedRefs(push.Changes)))
		return reply{status: http.StatusAccepted, result: resultNoMatch, body: answer}
	}
	return d.trigger(push, auth, answer)
}

// trigger syncs each authorized GitRepository that follows a ref the push
// moved, at most once, and says why it skipped the others.
func (d *delivery) trigger(push *Push, auth authorization, answer pushAnswer) reply {
	var triggered []*v1alpha1.GitRepository
	for _, repo := range auth.repos {
		change, reason := decide(repo, push.Changes)
		if change == nil {
			answer.Skipped = append(answer.Skipped, skippedRepo{Namespace: repo.Namespace, Name: repo.Name, Reason: reason})
			continue
		}
		d.h.opts.Trigger(repo, v1alpha1.PushRecord{
			Provider:   d.p.name,
			DeliveryID: push.DeliveryID,
			Ref:        change.Ref,
			Commit:     change.Commit,
			ReceivedAt: metav1.NewTime(d.received),
		})
		d.log.V(2).Info("Webhook push triggered a sync", "gitRepository", klog.KObj(repo), "ref", change.Ref, "pushedCommit", change.Commit)
		triggered = append(triggered, repo)
		answer.Triggered = append(answer.Triggered, triggeredRepo{Namespace: repo.Namespace, Name: repo.Name, Ref: change.Ref, Commit: change.Commit})
	}

	rep := reply{status: http.StatusOK, result: resultTriggered}
	if len(triggered) > 0 {
		answer.Message = fmt.Sprintf("triggered %d GitRepositories, skipped %d", len(answer.Triggered), len(answer.Skipped))
		d.log.Info("Webhook push triggered syncs", "gitRepositories", klog.KObjSlice(triggered), "skipped", len(answer.Skipped))
	} else {
		rep.status, rep.result = http.StatusAccepted, resultSkipped
		answer.Message = msgAllSkipped
		d.log.V(2).Info("Webhook push skipped by every GitRepository", "skipped", len(answer.Skipped))
	}
	if auth.capped {
		answer.Message += "; " + msgCapped
	}
	rep.body = answer
	return rep
}

// unauthorized answers a delivery whose signature verified against nothing.
func (d *delivery) unauthorized(auth authorization, keys []string) reply {
	if auth.readFailed {
		// Saying 401 here would send the user hunting for a wrong secret
		// that may well be right; 503 makes senders that retry, retry.
		return refuse(http.StatusServiceUnavailable, resultError,
			"could not read the webhook Secrets to check the signature; retry later, alumiini's log says more")
	}
	d.log.V(2).Info("Webhook delivery matched no secret", "matchKeys", keys)
	message := "looked up GitRepositories whose spec.url matches " + strings.Join(keys, ", ")
	if len(keys) == 0 {
		// A ping or an ignored event may name no repository; then no
		// spec.webhook.secretRef applies to it.
		message = "the delivery names no repository URL, so only the platform secret (--webhook-secret) can verify it"
	}
	if auth.capped {
		message += "; " + msgCapped
	}
	return reply{status: http.StatusUnauthorized, result: resultUnauthorized, body: errorAnswer{Error: msgUnauthorized, Message: message}}
}

// candidates are the GitRepositories on any of the URLs, sorted by
// namespace/name, and the match keys looked up.
func (d *delivery) candidates(urls []string) ([]*v1alpha1.GitRepository, []string) {
	var keys []string
	seenKeys := make(map[string]bool)
	seen := make(map[types.NamespacedName]bool)
	var repos []*v1alpha1.GitRepository
	for _, u := range urls {
		key := MatchKey(u)
		if key == "" || seenKeys[key] {
			continue
		}
		seenKeys[key] = true
		keys = append(keys, key)
		for _, repo := range d.h.opts.Repositories(key) {
			if repo == nil {
				continue
			}
			nn := types.NamespacedName{Namespace: repo.Namespace, Name: repo.Name}
			if seen[nn] {
				continue
			}
			seen[nn] = true
			repos = append(repos, repo)
		}
	}
	sort.Slice(repos, func(i, j int) bool {
		if repos[i].Namespace != repos[j].Namespace {
			return repos[i].Namespace < repos[j].Namespace
		}
		return repos[i].Name < repos[j].Name
	})
	return repos, keys
}

// authorize checks the signature against the platform secret and against the
// Secrets the candidates name, each read and checked at most once.
func (d *delivery) authorize(ctx context.Context, candidates []*v1alpha1.GitRepository) authorization {
	var auth authorization
	if name := d.h.opts.PlatformSecret; name.Name != "" {
		data, err := d.h.secrets.get(ctx, name)
		if err != nil {
			d.log.Error(err, "Reading the platform webhook Secret", "secret", name)
			auth.readFailed = true
		}
		auth.platform = d.verifies(data[d.p.name])
	}
	if auth.platform {
		auth.repos = candidates
		return auth
	}
	verified := make(map[types.NamespacedName]bool)
	perNamespace := make(map[string]int)
	for _, repo := range candidates {
		if repo.Spec.Webhook == nil || repo.Spec.Webhook.SecretRef.Name == "" {
			continue
		}
		name := types.NamespacedName{Namespace: repo.Namespace, Name: repo.Spec.Webhook.SecretRef.Name}
		ok, checked := verified[name]
		if !checked {
			if len(verified) >= maxSecretsPerRequest || perNamespace[name.Namespace] >= maxSecretsPerNamespace {
				auth.capped = true
				continue
			}
			perNamespace[name.Namespace]++
			data, err := d.h.secrets.get(ctx, name)
			if err != nil {
				d.log.Error(err, "Reading a webhook Secret", "secret", name)
				auth.readFailed = true
			}
			ok = d.verifies(data["token"])
			verified[name] = ok
		}
		if ok {
			auth.repos = append(auth.repos, repo)
		}
	}
	return auth
}

// verifies checks the delivery's signature with secret. An empty secret never
// verifies: anyone can sign with it.
func (d *delivery) verifies(secret []byte) bool {
	return len(secret) > 0 && d.p.verify(d.header, d.body, secret)
}

// decide returns the change that triggers repo, or why repo is skipped.
func decide(repo *v1alpha1.GitRepository, changes []Change) (*Change, string) {
	spec := &repo.Spec
	switch {
	case spec.Suspend:
		return nil, "suspended"
	case spec.Commit != "":
		return nil, "pinned to commit " + shortCommit(spec.Commit)
	case len(changes) == 0:
		return nil, "the push moved no branch or tag"
	}
	want, follows := "refs/tags/"+spec.Tag, "tag "+spec.Tag
	if spec.Tag == "" {
		branch := spec.Branch
		if branch == "" {
			branch = "main"
		}
		want, follows = "refs/heads/"+branch, "branch "+branch
	}
	deleted := false
	for i := range changes {
		if changes[i].Ref != want {
			continue
		}
		if changes[i].Deleted {
			deleted = true
			continue
		}
		return &changes[i], ""
	}
	if deleted {
		return nil, "ref deleted"
	}
	return nil, fmt.Sprintf("follows %s, push was to %s", follows, strings.Join(changedRefs(changes), ", "))
}

func changedRefs(changes []Change) []string {
	refs := make([]string, 0, len(changes))
	for _, c := range changes {
		refs = append(refs, c.Ref)
	}
	return refs
}

func shortCommit(commit string) string {
	if len(commit) > 12 {
		return commit[:12]
	}
	return commit
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "(none)"
	}
	return strings.Join(list, ", ")
}

func providerNames() []string {
	names := make([]string, 0, len(providers))
	for name := range providers {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func (rep reply) write(w http.ResponseWriter) {
	header := w.Header()
	for k, v := range rep.header {
		header[k] = v
	}
	header.Set("Content-Type", "application/json")
	header.Set("X-Content-Type-Options", "nosniff")
	header.Set("Cache-Control", "no-store")
	w.WriteHeader(rep.status)
	if err := json.NewEncoder(w).Encode(rep.body); err != nil {
		klog.V(4).InfoS("Writing a webhook answer", "err", err)
	}
}
