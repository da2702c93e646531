// Package peruser bounds what one requester of alumiini's API holds at once
// (sync requests waiting for their result, watches), so that nobody can
// exhaust the process that the API server, the controller and etcd share.
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

// Limit counts what each requester holds, up to a maximum.
type Limit struct {
	max int
	// what is held, plural ("watches of this API"); hint says what to do
	// when refused.
	what, hint string

	mu   sync.Mutex
	held map[requester]int
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

// New returns a Limit of max of what per requester; a refusal says hint.
func New(max int, what, hint string) *Limit {
	return &Limit{max: max, what: what, hint: hint, held: map[requester]int{}}
}

// Acquire takes one of the requester's slots, or refuses with 429.
func (l *Limit) Acquire(ctx context.Context) (release func(), err error) {
	var who requester
	if u, ok := genericapirequest.UserFrom(ctx); ok {
		who = requesterOf(u)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[who] >= l.max {
		return nil, apierrors.NewTooManyRequests(fmt.Sprintf("%s %d %s; %s", who.holds(), l.max, l.what, l.hint), 1)
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
// already holds l's maximum of them. It must run after authentication and
// authorization: only an authorized watch counts. Members of system:masters,
// alumiini's own loopback client among them, are not counted.
func LimitWatches(handler http.Handler, l *Limit, s runtime.NegotiatedSerializer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		info, ok := genericapirequest.RequestInfoFrom(req.Context())
		if !ok || !info.IsResourceRequest || info.Verb != "watch" {
			handler.ServeHTTP(w, req)
			return
		}
		if u, ok := genericapirequest.UserFrom(req.Context()); ok && slices.Contains(u.GetGroups(), user.SystemPrivilegedGroup) {
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
