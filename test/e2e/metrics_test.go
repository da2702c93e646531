package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/test/gitserver"
	"github.com/falsesystems/alumiini/test/localcluster"
)

// scrapeSeries reads the cluster's alumiini's metrics from the
// unauthenticated listener (seriesAt):
// alumiini_gitrepository_ready{name="x",namespace="y"}.
func scrapeSeries(t *testing.T) map[string]float64 {
	t.Helper()
	series, err := seriesAt(cluster.MetricsURL)
	if err != nil {
		t.Fatal(err)
	}
	return series
}

// seriesAt reads the metrics served at url, each series by its name and
// labels as the exposition format writes them.
func seriesAt(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	series := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cut := strings.LastIndexByte(line, ' ')
		if cut <= 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[cut+1:], 64); err == nil {
			series[line[:cut]] = v
		}
	}
	return series, nil
}

// scrape sums each metric's series by name (all label sets together).
func scrape(t *testing.T) map[string]float64 {
	t.Helper()
	sums := map[string]float64{}
	for series, v := range scrapeSeries(t) {
		name, _, _ := strings.Cut(series, "{")
		sums[name] += v
	}
	return sums
}

// TestEveryMetricFamilyIsServedAndMoves: Prometheus scrapes
// --metrics-bind-address without credentials, and a push, a sync and a
// correction move each family (restarts, stalls and evictions exist at 0).
func TestEveryMetricFamilyIsServedAndMoves(t *testing.T) {
	before, beforeSeries := scrape(t), scrapeSeries(t)
	const name = "metrics-families"
	pushRepository(t, name, map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
	hookedRepository(t, "default", name, name, "")
	commit := pushRepository(t, name, map[string]gitserver.File{"deploy/cm.yaml": {Content: strings.Replace(configMapV1, `"1"`, `"2"`, 1)}})
	body, h := pushPayload("github", name, "refs/heads/main", commit, cluster.WebhookSecret)
	if status, answer := sendHook(t, "github", body, h); status != http.StatusOK {
		t.Fatalf("%d %+v", status, answer)
	}
	eventually(t, 10*time.Second, func() string {
		if lastSynced(t, "default", name) != commit {
			return "not synced"
		}
		return ""
	})
	kubectl(t, "delete", "configmap", "settings", "-n", name)
	eventually(t, 10*time.Second, func() string {
		if settingsVersion(t, name) != "2" {
			return "not corrected"
		}
		return ""
	})
	// Scrapes within a second share one gather: wait for a fresh one.
	eventually(t, 10*time.Second, func() string {
		return familiesMoved(scrape(t), scrapeSeries(t), before, beforeSeries)
	})
}

// familiesMoved says which of alumiini's metric families did not move from
// before to after (or are not served); "" when all did.
func familiesMoved(after, afterSeries, before, beforeSeries map[string]float64) string {
	var stuck []string
	// Listings and fetches are told apart by their kind label.
	for _, kind := range []string{"listing", "fetch"} {
		series := `alumiini_git_transfers_total{kind="` + kind + `",result="ok"}`
		if afterSeries[series] <= beforeSeries[series] {
			stuck = append(stuck, fmt.Sprintf("%s did not move: %v → %v", series, beforeSeries[series], afterSeries[series]))
		}
	}
	for _, family := range []string{
		"alumiini_syncs_total", "alumiini_sync_duration_seconds_count", "alumiini_objects_applied_total",
		"alumiini_gitrepository_last_sync_timestamp_seconds", "alumiini_slot_wait_seconds_count",
		"alumiini_git_transfers_total", "alumiini_git_transfer_duration_seconds_count", "alumiini_git_transfer_bytes_total",
		"alumiini_git_fetch_slot_wait_seconds_count", "alumiini_git_listing_slot_wait_seconds_count",
		"alumiini_webhook_requests_total", "alumiini_webhook_request_duration_seconds_count",
		"alumiini_drift_detected_total", "alumiini_drift_corrected_total",
	} {
		if after[family] <= before[family] {
			stuck = append(stuck, fmt.Sprintf("%s did not move: %v → %v", family, before[family], after[family]))
		}
	}
	for _, family := range []string{"alumiini_workers", "alumiini_git_cache_bytes", "alumiini_controller_leading"} {
		if after[family] <= 0 {
			stuck = append(stuck, fmt.Sprintf("%s is %v", family, after[family]))
		}
	}
	for _, family := range []string{"alumiini_worker_restarts_total", "alumiini_worker_stalls_total", "alumiini_git_cache_evictions_total",
		"alumiini_cdevents_total"} {
		if _, ok := after[family]; !ok {
			stuck = append(stuck, family+" is not served")
		}
	}
	return strings.Join(stuck, "; ")
}

// TestTheReadyGaugeFollowsTheReadyCondition: alumiini_gitrepository_ready is
// 1 for a GitRepository whose Ready condition is True and 0 for one whose is
// False, whether its sync failed or succeeded and then its health wait timed
// out (what the "not Ready" alert fires on); a suspended one has no series,
// nor has a deleted one.
func TestTheReadyGaugeFollowsTheReadyCondition(t *testing.T) {
	const good, failing, unhealthy = "ready-gauge-good", "ready-gauge-failing", "ready-gauge-unhealthy"
	readyRepository(t, good, "")
	kubectlInput(t, `apiVersion: alumiini.false.systems/v1alpha1
kind: GitRepository
metadata:
  name: `+failing+`
spec:
  url: http://127.0.0.1:1/nothing-listens-here.git
  interval: 1h
  targetNamespace: default
`, "apply", "-f", "-")
	createNamespace(t, unhealthy)
	pushRepository(t, unhealthy, map[string]gitserver.File{"deploy/cm.yaml": {Content: configMapV1}})
	kubectlInput(t, gitRepository(unhealthy, unhealthy, unhealthy,
		"  wait: true\n  healthTimeout: 2s\n  healthChecks: [{apiVersion: v1, kind: ConfigMap, name: never-made}]\n"), "apply", "-f", "-")
	waitForPhase(t, "default", failing, "Failed")
	waitForPhase(t, "default", unhealthy, "Synced") // the sync succeeded; Ready waits for health
	gauge := func(name string) string {
		return `alumiini_gitrepository_ready{name="` + name + `",namespace="default"}`
	}
	want := map[string]float64{good: 1, failing: 0, unhealthy: 0}
	eventually(t, 20*time.Second, func() string {
		series := scrapeSeries(t)
		for name, v := range want {
			if got, ok := series[gauge(name)]; !ok || got != v {
				return fmt.Sprintf("%s is %v (served: %v), want %v", gauge(name), got, ok, v)
			}
		}
		return ""
	})
	kubectl(t, "patch", "gitrepository", good, "--type=merge", "-p", `{"spec":{"suspend":true}}`)
	kubectl(t, "delete", "gitrepository", failing, "--wait")
	eventually(t, 20*time.Second, func() string {
		series := scrapeSeries(t)
		for _, name := range []string{good, failing} {
			if _, ok := series[gauge(name)]; ok {
				return "the series of " + name + " (suspended or deleted) is still served"
			}
		}
		return ""
	})
}

// TestReadyzSaysStorageAndControllerAreReady: /readyz includes the
// embedded etcd and the controller's informer.
func TestReadyzSaysStorageAndControllerAreReady(t *testing.T) {
	out, err := cluster.AlumiiniGet(context.Background(), "/readyz?verbose")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, want := range []string{"[+]etcd ok", "[+]alumiini-controller ok", "readyz check passed"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("/readyz lacks %q:\n%s", want, out)
		}
	}
	for _, path := range []string{"/livez", "/healthz"} {
		if out, err := cluster.AlumiiniGet(context.Background(), path); err != nil || string(out) != "ok" {
			t.Errorf("%s: %q %v", path, out, err)
		}
	}
}

// TestCredentialsNeverReachStatusEventsOrLog: a GitRepository whose Secret
// holds a password, syncing from a server that refuses it; the password is
// in no status, Event or (checked after all tests, in TestMain) log line.
func TestCredentialsNeverReachStatusEventsOrLog(t *testing.T) {
	const name = "secret-never-logged"
	password := "pw-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-do-not-log"
	secretValues = append(secretValues, password)
	createNamespace(t, name)
	kubectlInput(t, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  username: deploy\n  password: "+password+"\n", "apply", "-f", "-")
	kubectlInput(t, `apiVersion: alumiini.false.systems/v1alpha1
kind: GitRepository
metadata:
  name: `+name+`
spec:
  url: https://127.0.0.1:1/nothing-listens-here.git
  interval: 10s
  targetNamespace: `+name+`
  secretRef:
    name: creds
`, "apply", "-f", "-")
	waitForPhase(t, "default", name, "Failed")
	for _, out := range []string{
		kubectl(t, "get", "gitrepository", name, "-o", "yaml"),
		kubectl(t, "get", "events", "--field-selector", "involvedObject.name="+name, "-o", "yaml"),
	} {
		if strings.Contains(out, password) {
			t.Errorf("the password is shown:\n%s", out)
		}
	}
}

// TestTheBinaryLogsJSONAndTellsItsVersion: --logging-format=json makes every
// line JSON, from the first; `alumiini version` needs nothing running.
func TestTheBinaryLogsJSONAndTellsItsVersion(t *testing.T) {
	out, err := exec.Command(cluster.AlumiiniBinary(), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "alumiini ") || !strings.Contains(string(out), "k8s.io/apiserver: v") {
		t.Errorf("alumiini version: %v %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cluster.AlumiiniBinary(), append(ownData(t.TempDir()), "--logging-format=json", "--secure-port=0")...)
	cmd.Env = localcluster.ChildEnv()
	logs, _ := cmd.CombinedOutput() // standalone, until the timeout stops it
	lines := strings.Split(strings.TrimSpace(string(logs)), "\n")
	ready := false
	for _, line := range lines {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		ready = ready || entry["msg"] == "Embedded etcd ready"
	}
	if !ready {
		t.Errorf("no \"Embedded etcd ready\" among %d lines", len(lines))
	}
}

// TestTheDashboardAndAlertsQueryMetricsThatExist: every alumiini metric the
// shipped Grafana dashboard and PrometheusRule query is served.
func TestTheDashboardAndAlertsQueryMetricsThatExist(t *testing.T) {
	served := scrape(t)
	used := map[string]bool{}
	for _, file := range []string{"artifacts/monitoring/dashboard.json", "artifacts/monitoring/prometheusrule.yaml"} {
		data, err := os.ReadFile(filepath.Join(localcluster.RepoRoot(), file))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range regexp.MustCompile(`alumiini_[a-z_]+`).FindAllString(string(data), -1) {
			used[name] = true
		}
	}
	if len(used) < 10 {
		t.Fatalf("found only %d metric names in the dashboard and the alerts", len(used))
	}
	for name := range used {
		_, series := served[name]
		_, histogram := served[name+"_count"] // a histogram named as a family
		if !series && !histogram {
			t.Errorf("%s is queried but not served", name)
		}
	}
}
