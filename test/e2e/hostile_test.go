package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	"github.com/falsesystems/alumiini/test/gitserver"
)

// hostileGitServers answer as a git server trying to take alumiini down
// would. Each serves on loopback and stops with the test.
func hostileGitServers(t *testing.T) map[string]string {
	t.Helper()
	endless := func(w http.ResponseWriter, r *http.Request, status int, contentType, line string) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		chunk := []byte(strings.Repeat(line, 4096))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
	servers := map[string]http.HandlerFunc{
		// go-git once read an error body whole into memory.
		"endless-error": func(w http.ResponseWriter, r *http.Request) {
			endless(w, r, http.StatusInternalServerError, "text/plain", "no such repository, really ")
		},
		// A well-formed ref advertisement that never ends.
		"endless-refs": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
			w.WriteHeader(http.StatusOK)
			hash := strings.Repeat("a", 40)
			first := hash + " HEAD\x00multi_ack side-band-64k\n"
			fmt.Fprintf(w, "001e# service=git-upload-pack\n0000%04x%s", len(first)+4, first)
			w.(http.Flusher).Flush()
			line := fmt.Sprintf("%04x%s refs/heads/branch\n", 4+40+1+17+1, hash)
			chunk := []byte(strings.Repeat(line, 4096))
			for r.Context().Err() == nil {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		},
		// Lists one branch, then never sends its pack: holds a fetch slot.
		"stalled": func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/info/refs") {
				w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
				ref := strings.Repeat("b", 40) + " refs/heads/main\x00multi_ack side-band-64k ofs-delta shallow no-progress\n"
				fmt.Fprintf(w, "001e# service=git-upload-pack\n0000%04x%s0000", len(ref)+4, ref)
				return
			}
			w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		},
	}
	urls := map[string]string{}
	for name, handler := range servers {
		s := httptest.NewServer(handler)
		t.Cleanup(s.Close)
		urls[name] = s.URL + "/" + name + ".git"
	}
	return urls
}

// peakRSS is the most memory the process ever held resident (VmHWM), in MiB.
func peakRSS(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("reading alumiini's memory: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if fields := strings.Fields(line); len(fields) == 3 && fields[0] == "VmHWM:" {
			kib, _ := strconv.Atoi(fields[1])
			return kib / 1024
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// TestHostileInputsFailAloneAndBounded points GitRepositories at hostile git
// servers and hostile repositories while a neighbour keeps syncing pushes.
// Each hostile one fails with a reason; the neighbour never notices; the
// process stays up with bounded memory.
func TestHostileInputsFailAloneAndBounded(t *testing.T) {
	pid := cluster.AlumiiniPID()
	if pid == 0 {
		t.Fatal("alumiini is not running")
	}
	createNamespace(t, "hostile")
	readyRepository(t, "neighbour", "")

	// The hostile GitRepositories live in a namespace of their own, as a
	// hostile tenant's would; two stall their fetches, more than the one
	// fetch slot a namespace may hold.
	urls := hostileGitServers(t)
	for _, name := range []string{"stalled-2"} { // another URL: no shared fetch
		urls[name] = strings.Replace(urls["stalled"], "/stalled.git", "/"+name+".git", 1)
	}
	for name, url := range urls {
		repo := strings.Replace(gitRepository(name, name, "hostile", "  timeout: 5m\n"),
			"url: "+cluster.Git.BaseURL()+"/"+name+".git", "url: "+url, 1)
		kubectlInput(t, repo, "apply", "--namespace", "hostile", "-f", "-")
	}
	// A YAML alias bomb (billion laughs) behind a kustomization.
	bomb := "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
	for i, prev := 1, "a"; i < 10; i++ {
		name := string(rune('a' + i))
		bomb += fmt.Sprintf("%s: &%s [*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s]\n", name, name, prev, prev, prev, prev, prev, prev, prev, prev, prev)
		prev = name
	}
	pushRepository(t, "laughs", map[string]gitserver.File{
		"deploy/kustomization.yaml": {Content: "resources: [bomb.yaml]\n"},
		"deploy/bomb.yaml":          {Content: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\ndata:\n" + indent(bomb)},
	})
	// A kustomization that burns CPU: many patches on many resources.
	var burner, configMaps strings.Builder
	burner.WriteString("resources: [cms.yaml]\npatches:\n")
	for i := range 400 {
		fmt.Fprintf(&burner, "- target: {kind: ConfigMap}\n  patch: |-\n    - op: add\n      path: /metadata/labels/l%d\n      value: v\n", i)
		fmt.Fprintf(&configMaps, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c%d\n  labels: {a: b}\n", i)
	}
	pushRepository(t, "burner", map[string]gitserver.File{
		"deploy/kustomization.yaml": {Content: burner.String()},
		"deploy/cms.yaml":           {Content: configMaps.String()},
	})
	createNamespace(t, "hostile-yaml")
	kubectlInput(t, gitRepository("burner", "burner", "hostile-yaml", "  timeout: 5m\n"), "apply", "--namespace", "hostile-yaml", "-f", "-")
	kubectlInput(t, gitRepository("laughs", "laughs", "hostile", ""), "apply", "--namespace", "hostile-yaml", "-f", "-")
	time.Sleep(2 * time.Second) // let the stalled fetches take their slots

	// The neighbour syncs every push at once throughout.
	for i := 2; i <= 4; i++ {
		commit := pushRepository(t, "neighbour", map[string]gitserver.File{
			"deploy/cm.yaml": {Content: strings.Replace(configMapV1, `"1"`, strconv.Quote(strconv.Itoa(i)), 1)},
		})
		start := time.Now()
		answer := syncAndWait(t, "neighbour")
		took := time.Since(start)
		if answer.Status.Phase != v1alpha1.PhaseSynced || answer.Status.Commit != commit {
			t.Fatalf("the neighbour's sync %d beside hostile repositories: %+v", i, answer.Status)
		}
		t.Logf("neighbour sync %d took %s", i, took.Round(time.Millisecond))
		// Waiting for a slot a stalled server holds would cost the stall
		// time (30 s); a third of it leaves any slow machine a wide margin.
		if took > 10*time.Second {
			t.Errorf("the neighbour's sync %d waited %s: hostile servers held it up", i, took.Round(time.Millisecond))
		}
	}

	wantReasons := map[string]string{"endless-error": "LimitExceeded", "endless-refs": "LimitExceeded",
		"stalled": "Timeout", "stalled-2": "Timeout", "laughs": "RenderFailed", "burner": "RenderFailed"}
	namespaceOf := func(name string) string {
		if name == "laughs" || name == "burner" {
			return "hostile-yaml"
		}
		return "hostile"
	}
	for name, reason := range wantReasons {
		message := waitForPhaseWithin(t, namespaceOf(name), name, v1alpha1.PhaseFailed, 120*time.Second)
		got := kubectl(t, "get", "gitrepository", name, "-n", namespaceOf(name), "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].reason}`)
		t.Logf("%s: %s: %s", name, got, message)
		if got != reason || message == "" {
			t.Errorf("%s: Ready reason %q (%s), want %s with a message", name, got, message, reason)
		}
	}
	if cluster.AlumiiniPID() != pid {
		t.Fatal("alumiini exited or restarted")
	}
	peak := peakRSS(t, pid)
	t.Logf("alumiini peak RSS over the whole e2e run so far: %d MiB", peak)
	if peak > 1024 {
		t.Errorf("alumiini peaked at %d MiB resident: something is not bounded", peak)
	}
	for name := range wantReasons {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, _ = cluster.Kubectl(ctx, "delete", "gitrepository", name, "-n", namespaceOf(name), "--timeout=60s")
		cancel()
	}
	kubectl(t, "delete", "gitrepository", "neighbour", "--timeout=60s")
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ") + "\n"
}
