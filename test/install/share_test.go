package install

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/pkg/membership"
	"github.com/falsesystems/alumiini/test/gitserver"
	"github.com/falsesystems/alumiini/test/localcluster"
)

// TestThreeReplicasShareTheWork runs artifacts/overlays/share-work as its
// three pods would over an external etcd of three members (see
// shareTheWork); once all are synced one etcd member is killed, and the API
// and the syncs go on over the other two.
func TestThreeReplicasShareTheWork(t *testing.T) {
	dir := t.TempDir()
	etcd, err := cluster.StartExternalEtcdCluster(context.Background(), filepath.Join(dir, "etcd"), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer etcd.Stop()
	caPEM, replica := applyReplicaOverlay(t, "share-work", dir, etcd)
	shareTheWork(t, 60, caPEM, replica, func(string) map[string]string { return nil }, func() { etcd.KillMember(2) })
}

// TestThreeReplicasWithEmbeddedEtcdMembers runs artifacts/overlays/ha as its
// three pods would: no external etcd, each replica an embedded etcd member
// (peers on loopback ports here, TLS from one CA) and sharing the work (see
// shareTheWork): SIGKILL one and the API keeps answering with nothing lost;
// it restarts on its volume and rejoins the etcd cluster.
func TestThreeReplicasWithEmbeddedEtcdMembers(t *testing.T) {
	dir := t.TempDir()
	caPEM, replica := applyReplicaOverlay(t, "ha", dir, nil)
	ca, err := localcluster.NewCertificateAuthority(filepath.Join(dir, "etcd-pki"), "etcd-ca")
	if err != nil {
		t.Fatal(err)
	}
	type ports struct{ peer, client int }
	members, listen := []string{}, map[string]ports{}
	for i := range 3 {
		name := fmt.Sprintf("alumiini-%d", i)
		p := ports{freePort(t), freePort(t)}
		listen[name] = p
		members = append(members, fmt.Sprintf("%s=https://127.0.0.1:%d=https://127.0.0.1:%d", name, p.peer, p.client))
	}
	shareTheWork(t, 300, caPEM, replica, func(name string) map[string]string {
		return map[string]string{
			"--etcd-data-dir": filepath.Join(dir, name, "etcd"), "--etcd-member-name": name,
			"--etcd-peer-domain": "", "--etcd-members": strings.Join(members, ","),
			"--etcd-listen-peer-address":   fmt.Sprintf("127.0.0.1:%d", listen[name].peer),
			"--etcd-listen-client-address": fmt.Sprintf("127.0.0.1:%d", listen[name].client),
			"--etcd-ca-file":               ca.CertFile, "--etcd-ca-key-file": strings.TrimSuffix(ca.CertFile, ".crt") + ".key",
		}
	}, func() {})
}

// shareTheWork: n GitRepositories over three replicas; every one is owned
// by exactly one replica (status and metrics agree). SIGKILL one: the API
// keeps answering through the others with nothing lost, and they take its
// GitRepositories over within the lease time; a push reaching one replica
// syncs all; the killed one restarts under its name and takes back the
// same share. No GitRepository is synced by two replicas at once, by the
// replicas' own log lines of each sync (start and end); a sync the killed
// process had in flight leaves no line, so that one is not checked.
// synced is called once all are synced the first time.
func shareTheWork(t *testing.T, n int, caPEM []byte, replica replicaStarter, flagsOf func(name string) map[string]string, synced func()) {
	ctx := context.Background()
	names := []string{"alumiini-0", "alumiini-1", "alumiini-2"}
	procs := map[string]*process{}
	var ended []*process // killed or stopped, for their logs
	metricsPorts, webhookPorts := map[string]int{}, map[string]int{}
	start := func(name string) int {
		port := freePort(t)
		metricsPorts[name] = freePort(t)
		flags := map[string]string{"--replica-name": name, "--metrics-bind-address": "127.0.0.1:" + strconv.Itoa(metricsPorts[name])}
		for k, v := range flagsOf(name) {
			flags[k] = v
		}
		procs[name], webhookPorts[name] = replica(name, port, flags)
		return port
	}
	apiPorts := map[string]int{}
	for _, name := range names {
		apiPorts[name] = start(name)
	}
	defer func() {
		for _, p := range procs {
			p.stop()
		}
		if t.Failed() {
			for name, p := range procs {
				t.Logf("%s's log:\n%s", name, p.log())
			}
		}
	}()
	// The aggregator reaches alumiini-0, which survives; every replica
	// serves the same store.
	serveAPIFrom(t, apiPorts["alumiini-0"], caPEM)
	waitForAPI(t, procs["alumiini-0"])

	git, err := gitserver.Start(t.TempDir(), "127.0.0.1:0", gitserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer git.Close()
	commit := func(value string) string {
		t.Helper()
		files := map[string]gitserver.File{}
		for i := range n {
			files[fmt.Sprintf("deploy/app-%d/cm.yaml", i)] = gitserver.File{Content: fmt.Sprintf(
				"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-%d\ndata:\n  value: %s\n", i, value)}
		}
		sha, err := git.Commit(ctx, "shared", "main", files)
		if err != nil {
			t.Fatal(err)
		}
		return sha
	}
	commit("one")
	manifests := []string{"apiVersion: v1\nkind: Namespace\nmetadata: {name: share}",
		"apiVersion: v1\nkind: Secret\nmetadata: {name: hook, namespace: share}\nstringData: {token: shared-secret}"}
	for i := range n {
		manifests = append(manifests, fmt.Sprintf(`apiVersion: alumiini.false.systems/v1alpha1
kind: GitRepository
metadata: {name: app-%d, namespace: share}
spec:
  url: %s/shared.git
  path: deploy/app-%d
  interval: 1h
  webhook: {secretRef: {name: hook}}`, i, git.BaseURL(), i))
	}
	kubectl(t, strings.Join(manifests, "\n---\n"), "apply", "-f", "-")

	owners := waitForShares(t, n, "one", names)
	synced()
	counts := map[string]int{}
	for _, owner := range owners {
		counts[replicaOf(owner)]++
	}
	t.Logf("shares of %d GitRepositories: %v", n, counts)
	for _, name := range names {
		if counts[name] == 0 {
			t.Errorf("%s owns none of %d GitRepositories: %v", name, n, counts)
		}
		if got := workersMetric(t, metricsPorts[name]); got != counts[name] {
			t.Errorf("%s's alumiini_workers is %d, but status.owner names it for %d", name, got, counts[name])
		}
	}

	// SIGKILL one: the others take its GitRepositories over.
	const victim = "alumiini-2"
	procs[victim].kill()
	ended = append(ended, procs[victim])
	delete(procs, victim)
	killed := time.Now()
	survivors := names[:2]
	if got := strings.Count(kubectl(t, "", "get", "gitrepositories", "-n", "share", "-o", "name"), "\n"); got != n {
		t.Fatalf("with %s killed the API lists %d GitRepositories, want %d", victim, got, n)
	}
	after := waitForShares(t, n, "one", survivors)
	t.Logf("%s's %d GitRepositories owned by the others %s after SIGKILL (lease 15 s)",
		victim, counts[victim], time.Since(killed).Round(100*time.Millisecond))
	for key, owner := range owners {
		if replicaOf(owner) != victim && after[key] != owner {
			t.Errorf("%s moved from %s to %s, though its owner lives", key, owner, after[key])
		}
	}

	// A push reaching one survivor syncs every GitRepository: its own, and
	// the other's through a stored sync request.
	signedPush(t, webhookPorts["alumiini-0"], "shared-secret", git.BaseURL()+"/shared.git", commit("two"))
	waitForShares(t, n, "two", survivors)

	// The killed replica comes back under its name: it takes back exactly
	// the GitRepositories it had.
	start(victim)
	restarted := time.Now()
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		back := waitForShares(t, n, "two", names)
		var wrong []string
		for key, owner := range owners {
			if (replicaOf(owner) == victim) != (replicaOf(back[key]) == victim) {
				wrong = append(wrong, fmt.Sprintf("%s (was %s's, now %s's)", key, replicaOf(owner), replicaOf(back[key])))
			}
		}
		if len(wrong) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("90 s after its restart, %s does not own what it had: %v", victim, wrong)
		}
	}
	t.Logf("%s restarted owns its %d GitRepositories again after %s", victim, counts[victim], time.Since(restarted).Round(100*time.Millisecond))

	// A sync request with wait: true reaches alumiini-0 (the APIService's
	// backend) for a GitRepository another replica owns: it is stored, the
	// owner syncs, and the answer comes back through alumiini-0.
	var other string
	for key, owner := range owners {
		if replicaOf(owner) == victim {
			other = key
			break
		}
	}
	third := commit("three")
	out, err := cluster.KubectlInput(ctx, `{"spec":{"wait":true,"timeoutSeconds":30}}`, "create", "--raw",
		"/apis/alumiini.false.systems/v1alpha1/namespaces/share/gitrepositories/"+other+"/sync", "-f", "-")
	if err != nil {
		t.Fatalf("a waiting sync request for %s, owned by %s: %v %s", other, victim, err, out)
	}
	var result v1alpha1.GitRepositorySyncRequest
	if err := json.Unmarshal(out, &result); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if result.Status.Phase != v1alpha1.PhaseSynced || result.Status.Commit != third {
		t.Errorf("a waiting sync request for %s answered %+v, want Synced at %s", other, result.Status, third)
	}

	var logs []string
	for _, p := range append(ended, procs["alumiini-0"], procs["alumiini-1"], procs[victim]) {
		data, _ := os.ReadFile(p.logFile)
		logs = append(logs, string(data))
	}
	checkNoOverlap(t, n, logs)
}

// replicaOf is the replica name in an owner identity (name_process-id).
func replicaOf(owner string) string {
	name, _, _ := strings.Cut(owner, "_")
	return name
}

// waitForShares waits until every GitRepository of namespace share is
// owned by the replica of live that hashing gives it, synced, and its
// ConfigMap holds value; it returns the owners by name.
func waitForShares(t *testing.T, n int, value string, live []string) map[string]string {
	t.Helper()
	within := 90*time.Second + time.Duration(n)*200*time.Millisecond // 2 cores: room for a slow machine
	deadline := time.Now().Add(within)
	for {
		owners, problem := shares(t, n, value, live)
		if problem == "" {
			return owners
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, problem)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func shares(t *testing.T, n int, value string, live []string) (map[string]string, string) {
	var repos struct {
		Items []struct {
			Metadata struct{ Name string } `json:"metadata"`
			Status   struct{ Owner, LastSyncedCommit string }
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(kubectl(t, "", "get", "gitrepositories", "-n", "share", "-o", "json")), &repos); err != nil {
		t.Fatal(err)
	}
	var maps struct {
		Items []struct {
			Metadata struct{ Name string } `json:"metadata"`
			Data     map[string]string
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(kubectl(t, "", "get", "configmaps", "-n", "share", "-o", "json")), &maps); err != nil {
		t.Fatal(err)
	}
	values := map[string]string{}
	for _, m := range maps.Items {
		values[m.Metadata.Name] = m.Data["value"]
	}
	owners := map[string]string{}
	for _, r := range repos.Items {
		owner := r.Status.Owner
		if want := membership.Owner("share/"+r.Metadata.Name, live); replicaOf(owner) != want {
			return nil, fmt.Sprintf("%s is owned by %q, not by %s as hashing over %v says", r.Metadata.Name, owner, want, live)
		}
		if values[r.Metadata.Name] != value {
			return nil, fmt.Sprintf("ConfigMap %s holds %q, want %q", r.Metadata.Name, values[r.Metadata.Name], value)
		}
		owners[r.Metadata.Name] = owner
	}
	if len(owners) != n {
		return nil, fmt.Sprintf("%d GitRepositories, want %d", len(owners), n)
	}
	return owners, ""
}

// workersMetric reads alumiini_workers from a replica's metrics port.
func workersMetric(t *testing.T, port int) int {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "alumiini_workers "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatalf("no alumiini_workers on port %d", port)
	return 0
}

// syncLog is one sync's log line: klog's time, the GitRepository, and the
// sync's duration, so the line gives the sync's start and end.
var syncLog = regexp.MustCompile(`^[IEW](\d{4} \d\d:\d\d:\d\d\.\d{6}) .*"(?:Synced|Sync failed)".* gitRepository="([^"]+)".* duration="([^"]+)"`)

// checkNoOverlap fails if two processes' syncs of one GitRepository overlap.
func checkNoOverlap(t *testing.T, n int, logs []string) {
	t.Helper()
	type span struct {
		process    int
		start, end time.Time
	}
	spans := map[string][]span{}
	for i, log := range logs {
		for _, line := range strings.Split(log, "\n") {
			m := syncLog.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			end, err1 := time.Parse("0102 15:04:05.000000", m[1])
			took, err2 := time.ParseDuration(m[3])
			if err1 != nil || err2 != nil {
				t.Fatalf("an unreadable sync line: %q", line)
			}
			spans[m[2]] = append(spans[m[2]], span{i, end.Add(-took), end})
		}
	}
	checked := 0
	for key, list := range spans {
		for i, a := range list {
			for _, b := range list[i+1:] {
				checked++
				if a.process != b.process && a.start.Before(b.end) && b.start.Before(a.end) {
					t.Errorf("%s synced by two processes at once: %s–%s and %s–%s", key,
						a.start.Format("15:04:05.000"), a.end.Format("15:04:05.000"), b.start.Format("15:04:05.000"), b.end.Format("15:04:05.000"))
				}
			}
		}
	}
	if len(spans) < n {
		t.Errorf("sync lines for %d GitRepositories in the logs, want %d", len(spans), n)
	}
	t.Logf("%d pairs of syncs of one GitRepository checked for overlap", checked)
}
