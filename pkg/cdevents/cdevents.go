// Package cdevents tells a delivery pipeline what alumiini did, as CDEvents
// (cdevents.dev, spec v0.4) carried in CloudEvents over HTTP, sent from a
// bounded queue off the sync's path: a slow or dead sink never slows a sync.
package cdevents

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"

	"github.com/falsesystems/alumiini/pkg/metrics"
)

// SpecVersion is the CDEvents version the events follow.
const SpecVersion = "0.4.1"

// The event types alumiini sends. Drift has no CDEvents type of its own; it
// is a custom event (dev.cdeventsx.<tool>-<subject>.<predicate>.<version>).
const (
	ServiceDeployed   = "dev.cdevents.service.deployed.0.2.0"
	ServiceUpgraded   = "dev.cdevents.service.upgraded.0.2.0"
	ServiceRemoved    = "dev.cdevents.service.removed.0.2.0"
	ServiceRolledBack = "dev.cdevents.service.rolledback.0.2.0"
	Drifted           = "dev.cdeventsx.alumiini-gitrepository.drifted.0.1.0"
)

// Bounds of the sink: events waiting (in all, and of one namespace, so one
// busy tenant cannot crowd the others out), senders, and each attempt's time.
const (
	QueueLength          = 1000
	QueueLengthNamespace = 100
	senders              = 2
	attemptTimeout       = 5 * time.Second
	retries              = 3
)

// Event is what happened to one GitRepository's deployment.
type Event struct {
	Type string
	// Namespace and Name are the GitRepository's.
	Namespace, Name string
	// URL and Commit say what was deployed; Environment is the target
	// namespace.
	URL, Commit, Environment string
	// Detail is free text (what drifted, why it rolled back).
	Detail string
}

// Emitter is what emits events: a Sink, or nothing.
type Emitter interface{ Emit(Event) }

// Sink sends events to one HTTP endpoint.
type Sink struct {
	target string
	source string
	client cloudevents.Client
	queue  chan Event
	mu     sync.Mutex
	queued map[string]int // events waiting, by namespace
	// Counted is told each event's type and result: sent, failed or dropped.
	Counted func(eventType, result string)
}

// NewSink sends to target, naming source (e.g. the alumiini instance) as
// the events' source.
func NewSink(target, source string) (*Sink, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--cdevents-sink-url must be an http:// or https:// URL, got %q", target)
	}
	protocol, err := cloudevents.NewHTTP(cloudevents.WithTarget(target),
		cehttp.WithClient(http.Client{Timeout: attemptTimeout, Transport: cappedAnswers{next: http.DefaultTransport},
			// The sink is the one the flag names: a redirect is an error,
			// not somewhere else to post to.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}))
	if err != nil {
		return nil, fmt.Errorf("the CDEvents sink: %w", err)
	}
	client, err := cloudevents.NewClient(protocol)
	if err != nil {
		return nil, fmt.Errorf("the CDEvents sink: %w", err)
	}
	return &Sink{target: target, source: source, client: client, queue: make(chan Event, QueueLength), queued: map[string]int{},
		Counted: func(eventType, result string) { eventsTotal.WithLabelValues(eventType, result).Inc() }}, nil
}

// maxAnswerBytes bounds what is read of the sink's answer.
const maxAnswerBytes = 64 << 10

// cappedAnswers reads at most maxAnswerBytes of each answer: the sink is
// not ours, and the SDK may read a refusal's body whole.
type cappedAnswers struct{ next http.RoundTripper }

func (c cappedAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if resp != nil && resp.Body != nil {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.LimitReader(resp.Body, maxAnswerBytes), resp.Body}
	}
	return resp, err
}

var eventsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "alumiini_cdevents_total",
	Help: "CDEvents by type and result: sent, failed (after retries) or dropped (the queue was full).",
}, []string{"type", "result"})

// RegisterMetrics registers the sink's metrics with r.
func RegisterMetrics(r prometheus.Registerer) error { return metrics.Register(r, eventsTotal) }

// Emit queues e and returns at once; past QueueLength waiting events, or
// QueueLengthNamespace of e's namespace, e is dropped (and counted).
func (s *Sink) Emit(e Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queued[e.Namespace] >= QueueLengthNamespace {
		s.Counted(e.Type, "dropped")
		return
	}
	select {
	case s.queue <- e:
		s.queued[e.Namespace]++
	default:
		s.Counted(e.Type, "dropped")
	}
}

// Run sends queued events until ctx ends, and returns when its senders have.
func (s *Sink) Run(ctx context.Context) {
	var running sync.WaitGroup
	for range senders {
		running.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case e := <-s.queue:
					s.mu.Lock()
					if s.queued[e.Namespace]--; s.queued[e.Namespace] <= 0 {
						delete(s.queued, e.Namespace)
					}
					s.mu.Unlock()
					s.send(ctx, e)
				}
			}
		})
	}
	running.Wait()
}

func (s *Sink) send(ctx context.Context, e Event) {
	logger := klog.FromContext(ctx).WithValues("gitRepository", klog.KRef(e.Namespace, e.Name), "commit", e.Commit)
	event, err := s.cloudEvent(e, time.Now())
	if err != nil {
		logger.Error(err, "Encoding a CDEvent", "type", e.Type)
		s.Counted(e.Type, "failed")
		return
	}
	ctx = cloudevents.ContextWithRetriesExponentialBackoff(ctx, 500*time.Millisecond, retries)
	if result := s.client.Send(ctx, event); !cloudevents.IsACK(result) {
		logger.V(2).Info("Sending a CDEvent failed", "type", e.Type, "err", result)
		s.Counted(e.Type, "failed")
		return
	}
	s.Counted(e.Type, "sent")
}

// cloudEvent is e as a CDEvent in a CloudEvent: the CDEvent's context
// mirrors the CloudEvent's id, source, type and time.
func (s *Sink) cloudEvent(e Event, now time.Time) (cloudevents.Event, error) {
	id := uuid.NewString()
	event := cloudevents.NewEvent()
	event.SetID(id)
	event.SetSource(s.source)
	event.SetType(e.Type)
	event.SetTime(now)
	err := event.SetData(cloudevents.ApplicationJSON, body(e, id, s.source, now))
	return event, err
}

// cdevent is a CDEvent's JSON: context, subject and customData.
type cdevent struct {
	Context               cdContext  `json:"context"`
	Subject               cdSubject  `json:"subject"`
	CustomData            customData `json:"customData"`
	CustomDataContentType string     `json:"customDataContentType"`
}

type cdContext struct {
	Version   string `json:"version"`
	ID        string `json:"id"`
	Source    string `json:"source"`
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
}

type cdSubject struct {
	ID      string    `json:"id"`
	Source  string    `json:"source"`
	Type    string    `json:"type"`
	Content cdContent `json:"content"`
}

type cdContent struct {
	Environment cdEnvironment `json:"environment"`
	ArtifactID  string        `json:"artifactId,omitempty"`
}

type cdEnvironment struct {
	ID     string `json:"id"`
	Source string `json:"source,omitempty"`
}

type customData struct {
	GitRepository gitRepositoryRef `json:"gitRepository"`
	URL           string           `json:"url"`
	Commit        string           `json:"commit,omitempty"`
	Detail        string           `json:"detail,omitempty"`
}

type gitRepositoryRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func body(e Event, id, source string, now time.Time) cdevent {
	subjectType := "service"
	if e.Type == Drifted {
		subjectType = "alumiini-gitrepository"
	}
	artifact := ""
	if e.Commit != "" {
		artifact = "pkg:generic/" + url.PathEscape(e.Name) + "@" + e.Commit + "?vcs_url=" + url.QueryEscape(e.URL)
	}
	return cdevent{
		Context: cdContext{Version: SpecVersion, ID: id, Source: source, Type: e.Type, Timestamp: now.UTC().Format(time.RFC3339Nano)},
		Subject: cdSubject{ID: e.Namespace + "/" + e.Name, Source: source, Type: subjectType,
			Content: cdContent{Environment: cdEnvironment{ID: e.Environment, Source: source}, ArtifactID: artifact}},
		CustomData:            customData{GitRepository: gitRepositoryRef{Namespace: e.Namespace, Name: e.Name}, URL: e.URL, Commit: e.Commit, Detail: e.Detail},
		CustomDataContentType: "application/json",
	}
}
