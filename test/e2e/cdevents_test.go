package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/test/gitserver"
)

// receivedEvent is a CDEvent the sink received, with its CloudEvent type.
type receivedEvent struct {
	ceType string
	body   struct {
		Context struct {
			Type string `json:"type"`
		} `json:"context"`
		Subject struct {
			ID string `json:"id"`
		} `json:"subject"`
		CustomData struct {
			URL    string `json:"url"`
			Commit string `json:"commit"`
			Detail string `json:"detail"`
		} `json:"customData"`
	}
}

var (
	sinkMu     sync.Mutex
	sinkEvents []receivedEvent
	// sinkHang, while set, holds every request open unanswered until it
	// is closed or the sender gives up; sinkHeld counts those requests.
	sinkHang chan struct{}
	sinkHeld int
)

// hangSink makes the sink hang; the returned func ends it.
func hangSink() func() {
	sinkMu.Lock()
	defer sinkMu.Unlock()
	hang := make(chan struct{})
	sinkHang, sinkHeld = hang, 0
	return sync.OnceFunc(func() {
		sinkMu.Lock()
		sinkHang = nil
		sinkMu.Unlock()
		close(hang)
	})
}

func heldBySink() int {
	sinkMu.Lock()
	defer sinkMu.Unlock()
	return sinkHeld
}

// startCDEventsSink is the delivery pipeline's end: an HTTP server on
// loopback recording every CDEvent alumiini posts.
func startCDEventsSink() (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		e := receivedEvent{ceType: r.Header.Get("Ce-Type")}
		_ = json.Unmarshal(data, &e.body)
		sinkMu.Lock()
		if hang := sinkHang; hang != nil {
			sinkHeld++
			sinkMu.Unlock()
			select {
			case <-hang:
			case <-r.Context().Done():
				return // the sender gave up: nothing was received
			}
			sinkMu.Lock()
		}
		sinkEvents = append(sinkEvents, e)
		sinkMu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = server.Serve(l) }()
	return "http://" + l.Addr().String() + "/", func() { _ = server.Close() }, nil
}

// waitForCDEvent waits for an event of eventType about subject.
func waitForCDEvent(t *testing.T, eventType, subject string) receivedEvent {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		sinkMu.Lock()
		for _, e := range sinkEvents {
			if e.ceType == eventType && e.body.Context.Type == eventType && e.body.Subject.ID == subject {
				sinkMu.Unlock()
				return e
			}
		}
		sinkMu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s event for %s reached the sink", eventType, subject)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func cdEventArrived(eventType, subject, commit string) bool {
	sinkMu.Lock()
	defer sinkMu.Unlock()
	for _, e := range sinkEvents {
		if e.ceType == eventType && e.body.Subject.ID == subject && e.body.CustomData.Commit == commit {
			return true
		}
	}
	return false
}

// TestCDEventsReachThePipeline: the first sync, a new commit, drift and the
// deletion of a GitRepository each post a CDEvent naming the GitRepository,
// its URL and commit.
func TestCDEventsReachThePipeline(t *testing.T) {
	createNamespace(t, "cdevents")
	first := pushRepository(t, "cdevents", map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
	kubectlInput(t, gitRepository("cdevents", "cdevents", "cdevents", ""), "apply", "-f", "-")
	deployed := waitForCDEvent(t, "dev.cdevents.service.deployed.0.2.0", "default/cdevents")
	if deployed.body.CustomData.Commit != first || !strings.HasSuffix(deployed.body.CustomData.URL, "/cdevents.git") {
		t.Errorf("service.deployed: %+v", deployed.body)
	}
	second := pushRepository(t, "cdevents", map[string]gitserver.File{"deploy/cm.yaml": {Content: strings.Replace(configMapV1, `"1"`, `"2"`, 1)}})
	syncAndWait(t, "cdevents")
	if upgraded := waitForCDEvent(t, "dev.cdevents.service.upgraded.0.2.0", "default/cdevents"); upgraded.body.CustomData.Commit != second {
		t.Errorf("service.upgraded: %+v", upgraded.body)
	}
	kubectl(t, "delete", "configmap", "settings", "-n", "cdevents")
	if drifted := waitForCDEvent(t, "dev.cdeventsx.alumiini-gitrepository.drifted.0.1.0", "default/cdevents"); !strings.Contains(drifted.body.CustomData.Detail, "settings") {
		t.Errorf("drift: %+v", drifted.body)
	}
	kubectl(t, "delete", "gitrepository", "cdevents", "--timeout=60s")
	waitForCDEvent(t, "dev.cdevents.service.removed.0.2.0", "default/cdevents")
}

// TestAHangingSinkDelaysNoSync: while the sink holds every event open and
// answers none, GitRepositories sync as usual; the events arrive once it
// answers again.
func TestAHangingSinkDelaysNoSync(t *testing.T) {
	release := hangSink()
	defer release()
	createNamespace(t, "cdevents-hang")
	pushRepository(t, "cdevents-hang", map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
	kubectlInput(t, gitRepository("cdevents-hang", "cdevents-hang", "cdevents-hang", ""), "apply", "-f", "-")
	kubectl(t, "wait", "--for=condition=Ready", "gitrepository/cdevents-hang", "--timeout=30s")
	for deadline := time.Now().Add(10 * time.Second); heldBySink() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first sync's event never reached the hanging sink")
		}
	}
	var last string
	for i := 2; i <= 3; i++ {
		last = pushRepository(t, "cdevents-hang", map[string]gitserver.File{"deploy/cm.yaml": {
			Content: strings.Replace(configMapV1, `"1"`, `"`+strconv.Itoa(i)+`"`, 1)}})
		start := time.Now()
		if got := syncAndWait(t, "cdevents-hang"); got.Status.Phase != "Synced" || got.Status.Commit != last {
			t.Fatalf("the sync while the sink hangs: %+v", got.Status)
		}
		took := time.Since(start)
		t.Logf("commit %d synced in %s with %d events held by the sink", i, took.Round(time.Millisecond), heldBySink())
		// A sync that waited on the sink would wait at least one attempt
		// (5 s) before the sender gives up; this one takes tens of ms.
		if took >= 5*time.Second {
			t.Errorf("the sync took %s: it waited on the hanging sink", took)
		}
	}
	release()
	for deadline := time.Now().Add(60 * time.Second); !cdEventArrived("dev.cdevents.service.upgraded.0.2.0", "default/cdevents-hang", last); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the last commit's service.upgraded never arrived once the sink answered")
		}
	}
}
