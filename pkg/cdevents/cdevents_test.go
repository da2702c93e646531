package cdevents

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestASinkReceivesTheCDEvent: a CloudEvent over HTTP (binary mode) whose
// data is the CDEvent, naming the commit, the URL and the GitRepository.
func TestASinkReceivesTheCDEvent(t *testing.T) {
	received := make(chan *http.Request, 1)
	bodies := make(chan []byte, 1)
	sinkServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		received <- r
		bodies <- data
		w.WriteHeader(http.StatusAccepted)
	}))
	defer sinkServer.Close()
	sink, err := NewSink(sinkServer.URL, "alumiini/test")
	if err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int32
	sink.Counted = func(_, result string) {
		if result == "sent" {
			sent.Add(1)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sink.Run(ctx)
	const commit = "0123456789abcdef0123456789abcdef01234567"
	sink.Emit(Event{Type: ServiceUpgraded, Namespace: "team", Name: "app", URL: "https://git.example/app.git", Commit: commit, Environment: "team"})
	var r *http.Request
	select {
	case r = <-received:
	case <-time.After(10 * time.Second):
		t.Fatal("the sink received nothing")
	}
	if r.Header.Get("Ce-Type") != ServiceUpgraded || r.Header.Get("Ce-Specversion") != "1.0" || r.Header.Get("Ce-Source") != "alumiini/test" {
		t.Errorf("CloudEvent headers: %v", r.Header)
	}
	var event cdevent
	if err := json.Unmarshal(<-bodies, &event); err != nil {
		t.Fatal(err)
	}
	if event.Context.Version != SpecVersion || event.Context.Type != ServiceUpgraded || event.Context.ID != r.Header.Get("Ce-Id") ||
		event.Subject.Type != "service" || event.Subject.ID != "team/app" || event.Subject.Content.Environment.ID != "team" ||
		event.CustomData.Commit != commit || event.CustomData.URL != "https://git.example/app.git" ||
		event.CustomData.GitRepository != (gitRepositoryRef{Namespace: "team", Name: "app"}) {
		t.Errorf("the CDEvent: %+v", event)
	}
	deadline := time.Now().Add(5 * time.Second)
	for sent.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if sent.Load() != 1 {
		t.Errorf("sent counted %d times", sent.Load())
	}
}

// TestAHangingSinkNeverBlocksEmit: with a sink that never answers, Emit
// still returns at once; past the queue's length events are dropped and
// counted.
func TestAHangingSinkNeverBlocksEmit(t *testing.T) {
	release := make(chan struct{})
	sinkServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer sinkServer.Close()
	defer close(release)
	sink, err := NewSink(sinkServer.URL, "alumiini/test")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	dropped := 0
	sink.Counted = func(_, result string) {
		if result == "dropped" {
			mu.Lock()
			dropped++
			mu.Unlock()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go sink.Run(ctx)
	start := time.Now()
	emitted := make(chan struct{})
	go func() {
		defer close(emitted)
		for i := range 2 * QueueLength {
			sink.Emit(Event{Type: Drifted, Namespace: fmt.Sprintf("team-%d", i%20), Name: "app"})
		}
	}()
	select {
	case <-emitted:
	case <-time.After(time.Minute):
		t.Fatalf("%d emits to a hanging sink have not returned after a minute: Emit blocks", 2*QueueLength)
	}
	t.Logf("%d emits to a hanging sink took %s", 2*QueueLength, time.Since(start))
	mu.Lock()
	defer mu.Unlock()
	if dropped < QueueLength-senders {
		t.Errorf("dropped %d of %d events to a hanging sink, want at least %d", dropped, 2*QueueLength, QueueLength-senders)
	}
}

// TestOneNamespaceCannotFillTheQueue: a namespace's events past
// QueueLengthNamespace are dropped, and another namespace's still queue.
func TestOneNamespaceCannotFillTheQueue(t *testing.T) {
	sink, err := NewSink("http://127.0.0.1:1/", "alumiini/test") // never run: nothing is sent
	if err != nil {
		t.Fatal(err)
	}
	dropped := map[bool]int{}
	sink.Counted = func(_, result string) { dropped[result == "dropped"]++ }
	for range QueueLength {
		sink.Emit(Event{Type: Drifted, Namespace: "noisy", Name: "app"})
	}
	sink.Emit(Event{Type: ServiceDeployed, Namespace: "quiet", Name: "app"})
	if dropped[true] != QueueLength-QueueLengthNamespace || len(sink.queue) != QueueLengthNamespace+1 {
		t.Errorf("dropped %d, queued %d; want %d dropped and the quiet namespace's event queued",
			dropped[true], len(sink.queue), QueueLength-QueueLengthNamespace)
	}
}

func TestOnlyHTTPSinks(t *testing.T) {
	for _, target := range []string{"", "ftp://sink", "sink:8080", "http://"} {
		if _, err := NewSink(target, "x"); err == nil {
			t.Errorf("%q accepted", target)
		}
	}
}

// TestASinksAnswerIsReadOnlyInPart: however long the sink's answer, at most
// maxAnswerBytes of it are read.
func TestASinksAnswerIsReadOnlyInPart(t *testing.T) {
	endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		chunk := make([]byte, 1<<20)
		for range 64 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer endless.Close()
	client := http.Client{Transport: cappedAnswers{next: http.DefaultTransport}}
	resp, err := client.Get(endless.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	read, err := io.Copy(io.Discard, resp.Body)
	if err != nil || read != maxAnswerBytes {
		t.Errorf("read %d bytes of a 64 MiB answer (%v), want %d", read, err, maxAnswerBytes)
	}
}
