package install

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// process is alumiini running as its pod would.
type process struct {
	cmd     *exec.Cmd
	logFile string
	done    chan struct{}
}

func (p *process) stop() {
	if p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// kill ends the process at once, as a node loss does.
func (p *process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *process) log() string {
	data, _ := os.ReadFile(p.logFile)
	lines := strings.Split(string(data), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	return strings.Join(lines, "\n")
}

// podArgs returns the arguments of the rendered manifest's StatefulSet, each
// flag named in local given local's value (or dropped, for ""), and local's
// other flags appended. An argument naming a path inside the pod that local
// does not map fails the test, so a new mount cannot go untested.
func podArgs(t *testing.T, manifest string, local map[string]string) []string {
	t.Helper()
	set := statefulSet(t, manifest)
	var args []string
	used := map[string]bool{}
	for _, arg := range set.Spec.Template.Spec.Containers[0].Args {
		name, value, _ := strings.Cut(arg, "=")
		if v, ok := local[name]; ok {
			used[name] = true
			if v != "" {
				args = append(args, name+"="+v)
			}
			continue
		}
		if strings.HasPrefix(value, "/") {
			t.Fatalf("the StatefulSet's %s names a path in the pod that the test does not map", arg)
		}
		args = append(args, arg)
	}
	for name, v := range local {
		if !used[name] && v != "" {
			args = append(args, name+"="+v)
		}
	}
	return args
}

// statefulSet is the rendered manifest's StatefulSet, with its one container.
func statefulSet(t *testing.T, manifest string) *appsv1.StatefulSet {
	t.Helper()
	var set *appsv1.StatefulSet
	for _, doc := range strings.Split(manifest, "\n---\n") {
		var candidate appsv1.StatefulSet
		if err := yaml.Unmarshal([]byte(doc), &candidate); err == nil && candidate.Kind == "StatefulSet" {
			set = &candidate
		}
	}
	if set == nil || len(set.Spec.Template.Spec.Containers) != 1 {
		t.Fatal("the manifest has no StatefulSet with one container")
	}
	return set
}

// podIdentity is who the StatefulSet's container runs as.
type podIdentity struct{ uid, gid, fsGroup int64 }

// podUser is the user, group and fsGroup the StatefulSet's container runs
// as (the container's securityContext over the pod's), which must be a
// non-root user with a read-only root filesystem: the process here runs so
// too, proving the hardened securityContext is one alumiini works in.
func podUser(t *testing.T, manifest string) podIdentity {
	t.Helper()
	spec := statefulSet(t, manifest).Spec.Template.Spec
	pod, container := spec.SecurityContext, spec.Containers[0].SecurityContext
	if pod == nil || container == nil {
		t.Fatal("the StatefulSet sets no securityContext")
	}
	uid, gid, nonRoot := pod.RunAsUser, pod.RunAsGroup, pod.RunAsNonRoot
	if container.RunAsUser != nil {
		uid = container.RunAsUser
	}
	if container.RunAsGroup != nil {
		gid = container.RunAsGroup
	}
	if container.RunAsNonRoot != nil {
		nonRoot = container.RunAsNonRoot
	}
	readOnly := container.ReadOnlyRootFilesystem
	if uid == nil || gid == nil || *uid == 0 || nonRoot == nil || !*nonRoot || pod.FSGroup == nil || readOnly == nil || !*readOnly {
		t.Fatal("the StatefulSet's container must run as a non-root runAsUser and runAsGroup (runAsNonRoot), with an fsGroup, on a read-only root filesystem")
	}
	return podIdentity{uid: *uid, gid: *gid, fsGroup: *pod.FSGroup}
}

// givePod makes each absolute path among local's values what the kubelet
// would make it for the pod: a directory (created if missing; the pod's
// volume) is the pod user's, a file (a key or certificate; the overlays'
// Secret volumes) is root's, readable by fsGroup alone (0440). The
// directories above each, which the test made, let others pass.
func givePod(t *testing.T, local map[string]string, id podIdentity) {
	t.Helper()
	temp := filepath.Clean(os.TempDir())
	passThrough := func(path string) {
		for dir := filepath.Dir(path); strings.HasPrefix(dir, temp+"/"); dir = filepath.Dir(dir) {
			info, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, info.Mode().Perm()|0o001); err != nil {
				t.Fatal(err)
			}
		}
	}
	passThrough(binary)
	for _, path := range local {
		if !filepath.IsAbs(path) {
			continue
		}
		info, err := os.Stat(path)
		if os.IsNotExist(err) {
			err = os.MkdirAll(path, 0o700)
			info, _ = os.Stat(path)
		}
		if err != nil {
			t.Fatal(err)
		}
		passThrough(path)
		owner, mode := fmt.Sprintf("%d:%d", id.uid, id.gid), "u+rwX"
		if !info.IsDir() {
			owner, mode = fmt.Sprintf("0:%d", id.fsGroup), "0440"
		}
		for _, cmd := range [][]string{{"chown", "-R", owner, path}, {"chmod", "-R", mode, path}} {
			if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v %s", cmd, err, out)
			}
		}
	}
}

// startAsThePod runs alumiini with the manifest's StatefulSet's arguments
// (made local by podArgs) and no kubeconfig: client-go's in-cluster loader
// reads the ServiceAccount token from where the kubelet projects it,
// bind-mounted there in a mount namespace of its own (this needs root, as
// the kubelet does). It runs as the pod's user on a read-only root
// filesystem (podUser).
func startAsThePod(t *testing.T, manifest, name string, local map[string]string) *process {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("running alumiini as its pod would needs root (a mount namespace to project the ServiceAccount token); run make test as root")
	}
	args := podArgs(t, manifest, local)
	id := podUser(t, manifest)
	givePod(t, local, id)
	token := strings.TrimSpace(kubectl(t, "", "create", "token", "alumiini", "-n", "alumiini-system", "--duration=1h"))
	projected := t.TempDir()
	ca, err := os.ReadFile(cluster.CACertPath())
	if err != nil {
		t.Fatal(err)
	}
	for file, data := range map[string]string{"token": token, "ca.crt": string(ca), "namespace": "alumiini-system"} {
		if err := os.WriteFile(filepath.Join(projected, file), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(projected, 0o755); err != nil {
		t.Fatal(err)
	}
	// In a mount namespace of its own: the token where the kubelet projects
	// it; the root filesystem read-only but for the temporary directory
	// (the pod's /tmp emptyDir; the test's data directories, standing for
	// the pod's volume, are in it too; other mounts such as /dev/shm are
	// left as they are); and the pod's user, group and fsGroup, no other
	// groups, no way to gain privileges.
	const mountPoint = "/var/run/secrets/kubernetes.io/serviceaccount"
	script := fmt.Sprintf("mkdir -p %[1]s && mount --bind %[2]s %[1]s && mount --bind %[3]s %[3]s && mount -o remount,bind,ro / && "+
		"exec setpriv --reuid=%[4]d --regid=%[5]d --groups=%[6]d --no-new-privs --inh-caps=-all --bounding-set=-all %[7]s %[8]s",
		mountPoint, projected, os.TempDir(), id.uid, id.gid, id.fsGroup, binary, strings.Join(args, " "))
	p := &process{cmd: exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script),
		logFile: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	logFile, err := os.Create(p.logFile)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	// A pod's environment, not the test's: HOME=/ as container runtimes set
	// it for a user the image's passwd does not name, and the Service's.
	// TMPDIR: the one writable directory (the pod's /tmp).
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/", "TMPDIR=" + os.TempDir(), "KUBERNETES_SERVICE_HOST=127.0.0.1",
		"KUBERNETES_SERVICE_PORT=" + strconv.Itoa(cluster.Ports().KubeAPIServer)}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); logFile.Close(); close(p.done) }()
	t.Cleanup(p.stop) // also when a check below fails; stopping twice is harmless
	checkRunsAsThePod(t, p, id)
	return p
}

// checkRunsAsThePod: the process (unshare, sh and setpriv exec in place, so
// its PID is alumiini's at last) runs as the pod's user and groups, with no
// capability and no way to gain one, so the test cannot pass as root.
func checkRunsAsThePod(t *testing.T, p *process, id podIdentity) {
	t.Helper()
	ids := func(v int64) string { return fmt.Sprintf("%d\t%d\t%d\t%d", v, v, v, v) }
	want := map[string]string{"Uid": ids(id.uid), "Gid": ids(id.gid), "Groups": fmt.Sprint(id.fsGroup),
		"NoNewPrivs": "1", "CapEff": "0000000000000000", "CapPrm": "0000000000000000", "CapBnd": "0000000000000000"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
		got := map[string]string{}
		for _, line := range strings.Split(string(status), "\n") {
			if key, value, ok := strings.Cut(line, ":"); ok {
				got[key] = strings.TrimSpace(value)
			}
		}
		mismatch := ""
		for key, value := range want {
			if got[key] != value {
				mismatch += fmt.Sprintf(" %s=%q (want %q)", key, got[key], value)
			}
		}
		if err == nil && mismatch == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("alumiini does not run as the pod would: %v%s\n%s", err, mismatch, p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serveAPIFrom points the APIService at a process on loopback port: there
// is no pod network here, so its Service becomes an ExternalName for
// localhost. caBundle, if given, is what cert-manager's CA injector would
// set; without it, alumiini sets its own (--apiservice-name).
func serveAPIFrom(t *testing.T, port int, caBundle []byte) {
	t.Helper()
	kubectl(t, "", "delete", "service", "alumiini", "-n", "alumiini-system", "--ignore-not-found")
	kubectl(t, fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata:\n  name: alumiini\n  namespace: alumiini-system\n"+
		"spec:\n  type: ExternalName\n  externalName: localhost\n  ports:\n  - port: %d\n", port), "apply", "-f", "-")
	spec := map[string]any{"service": map[string]any{"port": port}}
	if caBundle != nil {
		spec["caBundle"] = caBundle // base64 in JSON, as the API wants
	}
	patch, _ := json.Marshal(map[string]any{"spec": spec})
	kubectl(t, "", "patch", "apiservice", "v1alpha1.alumiini.false.systems", "--type=merge", "-p", string(patch))
}

// waitForAPI waits until kube-apiserver serves alumiini's group through the
// APIService, from p.
func waitForAPI(t *testing.T, p *process) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, err := cluster.Kubectl(context.Background(), "get", "--raw", "/apis/alumiini.false.systems/v1alpha1")
		if err == nil && strings.Contains(string(out), "gitrepositories") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API is not served through the APIService: %v %s\nthe replica's log:\n%s", err, out, p.log())
		}
		time.Sleep(500 * time.Millisecond)
	}
}
