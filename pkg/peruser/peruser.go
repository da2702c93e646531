package peruser

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
)

// Limit counts what each requester holds, up to a maximum, in this process
// (each replica counts its own).
type Limit struct {
	limit, retryAfterSeconds int
	// what is held, plural ("watches of ..."); hint says what to do when
	// refused.
	what, hint string

	mu     sync.Mutex
	held   map[requester]int
	exempt map[string]bool // user names LimitWatches does not count
}

// requester is whom a request counts against: the ServiceAccounts of one
// namespace together, since whoever may create ServiceAccounts there may
// make as many users as they like, or else one user by name.
type requester struct{ serviceAccountsOf, user string }

func requesterOf(u user.Info) requester {
	if namespace, _, err := serviceaccount.SplitUsername(u.GetName()); err == nil {
		return requester{serviceAccountsOf: namespace}
	}
	return requester{user: u.GetName()}
}

// holds says that r already holds something, with the verb agreeing.
func (r requester) holds() string {
	if r.serviceAccountsOf != "" {
		return fmt.Sprintf("the ServiceAccounts of namespace %q already have", r.serviceAccountsOf)
	}
	return fmt.Sprintf("user %q already has", r.user)
}

// New returns a Limit that lets each requester hold limit of what at once;
// a refusal says hint and asks to retry after retryAfterSeconds.
func New(limit, retryAfterSeconds int, what, hint string) *Limit {
	return &Limit{limit: limit, retryAfterSeconds: retryAfterSeconds, what: what, hint: hint,
		held: map[requester]int{}, exempt: map[string]bool{}}
}

// Exempt keeps user's watches out of LimitWatches' count: alumiini's own
// identity, whose watches through kube-apiserver (health waits on the
// GitRepositories it applied) would otherwise use up its namespace's.
func (l *Limit) Exempt(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.exempt[user] = true
}

func (l *Limit) exempted(u user.Info) bool {
	if slices.Contains(u.GetGroups(), user.SystemPrivilegedGroup) {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.exempt[u.GetName()]
}

// Acquire takes one of the requester's slots, or refuses with 429.
func (l *Limit) Acquire(ctx context.Context) (release func(), err error) {
	var who requester
	if u, ok := genericapirequest.UserFrom(ctx); ok {
		who = requesterOf(u)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[who] >= l.limit {
		return nil, apierrors.NewTooManyRequests(fmt.Sprintf("%s %d %s, the most allowed; %s",
			who.holds(), l.limit, l.what, l.hint), l.retryAfterSeconds)
	}
	l.held[who]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.held[who]--; l.held[who] <= 0 {
			delete(l.held, who)
		}
	}, nil
}

// LimitWatches serves handler, refusing a watch (429) when its requester
// already holds l's maximum of them. It must be the innermost filter, after
// authentication, impersonation and authorization: without the request's
// user and RequestInfo it counts nothing, and only an authorized watch
// should count. Members of system:masters (alumiini's own loopback client)
// and exempt users are not counted.
func LimitWatches(handler http.Handler, l *Limit, s runtime.NegotiatedSerializer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		info, ok := genericapirequest.RequestInfoFrom(req.Context())
		if !ok || !info.IsResourceRequest || info.Verb != "watch" {
			handler.ServeHTTP(w, req)
			return
		}
		if u, ok := genericapirequest.UserFrom(req.Context()); ok && l.exempted(u) {
			handler.ServeHTTP(w, req)
			return
		}
		release, err := l.Acquire(req.Context())
		if err != nil {
			responsewriters.ErrorNegotiated(err, s, schema.GroupVersion{Group: info.APIGroup, Version: info.APIVersion}, w, req)
			return
		}
		defer release()
		handler.ServeHTTP(w, req)
	})
}
