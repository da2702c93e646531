package localcluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/falsesystems/alumiini/test/freeport"
	"github.com/falsesystems/alumiini/test/gitserver"
)

// Names the local control plane gives alumiini, matching artifacts/deploy.
const (
	alumiiniNamespace  = "alumiini-system"
	alumiiniService    = "alumiini"
	alumiiniAPIService = "v1alpha1.alumiini.false.systems"
	exampleURLInFile   = "http://127.0.0.1:18480"
)

// Ports of the local control plane; a zero port is picked free at start.
type Ports struct {
	Etcd          int
	EtcdPeer      int
	KubeAPIServer int
	Alumiini      int
	Git           int
	// Webhook is alumiini's push-webhook receiver (plain HTTP on loopback).
	Webhook int
	// Metrics is alumiini's unauthenticated /metrics listener.
	Metrics int
}

// DefaultPorts are the fixed ports of `make dev`, so its URLs stay the same
// from run to run. Tests use zero ports and never collide with it.
var DefaultPorts = Ports{Etcd: 18479, EtcdPeer: 18481, KubeAPIServer: 18443, Alumiini: 18444, Git: 18480, Webhook: 18445, Metrics: 18446}

// WebhookSecretName is the platform-wide webhook Secret in alumiini's
// namespace (--webhook-secret); it holds WebhookSecret under every
// provider's key.
const WebhookSecretName = "alumiini-webhook"

// Options say where the control plane keeps its state and finds its binaries.
type Options struct {
	// Dir holds certificates, data, logs, kubeconfigs and git repositories.
	Dir string
	// ToolsDir has etcd, kube-apiserver and kubectl (hack/build-tools.sh).
	ToolsDir string
	// AlumiiniBinary is the alumiini command to run.
	AlumiiniBinary string
	// RepoRoot is the alumiini checkout, for artifacts/.
	RepoRoot string
	Ports    Ports
	// FastStorage skips fsync in both etcds: for tests, where a crash loses nothing of value.
	FastStorage bool
	// Progress receives one line per step.
	Progress io.Writer
	// AlumiiniArgs are added to alumiini's command line.
	AlumiiniArgs []string
	// AlumiiniEnv is added to alumiini's environment alone (GOGC=50, say).
	AlumiiniEnv []string
	// ControllerManagerArgs are added to kube-controller-manager's command
	// line (the bench raises its request rate, --kube-api-qps), and
	// KubeAPIServerArgs to kube-apiserver's (--profiling, to profile it).
	ControllerManagerArgs, KubeAPIServerArgs []string
	// ControlPlaneOnly starts etcd and kube-apiserver and nothing else, for
	// tests of code that talks to a cluster without alumiini in front.
	ControlPlaneOnly bool
}

// Cluster is a running local control plane.
type Cluster struct {
	opts Options
	pki  pki

	// Kubeconfig is the admin kubeconfig (system:masters).
	Kubeconfig string
	// Git serves Dir/git over HTTP.
	Git *gitserver.Server
	// AlumiiniURL is alumiini's own HTTPS address.
	AlumiiniURL string
	// WebhookURL is the push-webhook receiver, e.g. WebhookURL+"/hooks/github".
	WebhookURL string
	// WebhookSecret is the platform-wide webhook secret, fresh at each start.
	WebhookSecret string
	// MetricsURL serves alumiini's metrics without credentials.
	MetricsURL string

	etcd, kubeAPIServer, controllerManager, alumiini *process
}

// Start brings up etcd, kube-apiserver, the git server and alumiini, registers
// alumiini's APIService, and returns once kube-apiserver serves the
// alumiini.false.systems group. On error, whatever started is stopped again.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	for _, dir := range []string{"logs", "git"} {
		if err := os.MkdirAll(filepath.Join(opts.Dir, dir), 0o755); err != nil {
			return nil, err
		}
	}
	if err := pickFreePorts(&opts.Ports); err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, Kubeconfig: filepath.Join(opts.Dir, "kubeconfig")}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	step := func(format string, args ...any) { fmt.Fprintf(opts.Progress, "==> "+format+"\n", args...) }

	step("certificates in %s", filepath.Join(opts.Dir, "pki"))
	if c.pki, err = generatePKI(filepath.Join(opts.Dir, "pki"), alumiiniService+"."+alumiiniNamespace+".svc"); err != nil {
		return nil, err
	}

	step("etcd on 127.0.0.1:%d", opts.Ports.Etcd)
	if err := c.startEtcd(ctx); err != nil {
		return nil, err
	}
	step("kube-apiserver on https://127.0.0.1:%d", opts.Ports.KubeAPIServer)
	if err := c.startKubeAPIServer(ctx); err != nil {
		return nil, err
	}

	step("kube-controller-manager")
	if err := c.startControllerManager(ctx); err != nil {
		return nil, err
	}

	if opts.ControlPlaneOnly {
		return c, nil
	}
	gitLog, err := os.OpenFile(c.logPath("git"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	step("git server on http://127.0.0.1:%d serving %s", opts.Ports.Git, filepath.Join(opts.Dir, "git"))
	if c.Git, err = gitserver.Start(filepath.Join(opts.Dir, "git"), net.JoinHostPort("127.0.0.1", strconv.Itoa(opts.Ports.Git)), gitserver.Options{Log: gitLog, AllowPush: true}); err != nil {
		return nil, err
	}

	step("RBAC for alumiini")
	if err := c.applyFiles(ctx, "artifacts/deploy/namespace.yaml", "artifacts/deploy/rbac.yaml"); err != nil {
		return nil, err
	}
	step("platform webhook secret %s/%s", alumiiniNamespace, WebhookSecretName)
	if err := c.createWebhookSecret(ctx); err != nil {
		return nil, err
	}
	step("alumiini on https://127.0.0.1:%d", opts.Ports.Alumiini)
	if err := c.startAlumiini(ctx); err != nil {
		return nil, err
	}
	step("APIService %s", alumiiniAPIService)
	if err := c.registerAPIService(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// createWebhookSecret stores a fresh platform-wide webhook secret under
// every provider's key.
func (c *Cluster) createWebhookSecret(ctx context.Context) error {
	random := make([]byte, 16)
	if _, err := rand.Read(random); err != nil {
		return err
	}
	c.WebhookSecret = hex.EncodeToString(random)
	manifest := "apiVersion: v1\nkind: Secret\nmetadata:\n  name: " + WebhookSecretName + "\n  namespace: " + alumiiniNamespace +
		"\nstringData:\n"
	for _, provider := range []string{"github", "gitlab", "gitea", "bitbucket", "bitbucket-server", "generic"} {
		manifest += "  " + provider + ": " + c.WebhookSecret + "\n"
	}
	if out, err := c.KubectlInput(ctx, manifest, "apply", "-f", "-"); err != nil {
		return fmt.Errorf("creating the webhook secret: %v: %s", err, out)
	}
	return nil
}

func pickFreePorts(p *Ports) error {
	for _, port := range []*int{&p.Etcd, &p.EtcdPeer, &p.KubeAPIServer, &p.Alumiini, &p.Git, &p.Webhook, &p.Metrics} {
		if *port != 0 {
			continue
		}
		free, err := freeport.Loopback()
		if err != nil {
			return err
		}
		*port = free
	}
	return nil
}

func (c *Cluster) logPath(name string) string { return filepath.Join(c.opts.Dir, "logs", name+".log") }
func (c *Cluster) tool(name string) string    { return filepath.Join(c.opts.ToolsDir, name) }

func (c *Cluster) startEtcd(ctx context.Context) error {
	client := fmt.Sprintf("http://127.0.0.1:%d", c.opts.Ports.Etcd)
	peer := fmt.Sprintf("http://127.0.0.1:%d", c.opts.Ports.EtcdPeer)
	args := []string{
		"--name=local", "--data-dir=" + filepath.Join(c.opts.Dir, "etcd"),
		"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=local=" + peer, "--log-level=warn",
	}
	if c.opts.FastStorage {
		args = append(args, "--unsafe-no-fsync")
	}
	var err error
	if c.etcd, err = startProcess("etcd", c.logPath("etcd"), c.tool("etcd"), nil, args...); err != nil {
		return err
	}
	return waitFor(ctx, c.etcd, 30*time.Second, func() bool {
		resp, err := http.Get(client + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func (c *Cluster) startKubeAPIServer(ctx context.Context) error {
	p := c.pki
	args := []string{
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", c.opts.Ports.Etcd),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.opts.Ports.KubeAPIServer),
		"--tls-cert-file=" + p.cert(kubeServingCert), "--tls-private-key-file=" + p.key(kubeServingCert),
		"--client-ca-file=" + p.path(caCert),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.path(serviceAccountPub),
		"--service-account-signing-key-file=" + p.path(serviceAccountKey),
		// Wide enough for benchmarks with thousands of Services.
		"--service-cluster-ip-range=10.96.0.0/16",
		"--requestheader-client-ca-file=" + p.path(frontProxyCACert),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + p.cert(frontProxyClient), "--proxy-client-key-file=" + p.key(frontProxyClient),
		// alumiini runs as a local process: the aggregator reaches it through an
		// ExternalName Service to localhost, which only works without endpoint routing.
		"--enable-aggregator-routing=false",
		// Without this the log fills with errors about loopback endpoints.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
	args = append(args, c.opts.KubeAPIServerArgs...)
	var err error
	if c.kubeAPIServer, err = startProcess("kube-apiserver", c.logPath("kube-apiserver"), c.tool("kube-apiserver"), nil, args...); err != nil {
		return err
	}
	if err := c.writeKubeconfig(c.Kubeconfig, adminClientCert, c.opts.Ports.KubeAPIServer); err != nil {
		return err
	}
	return waitFor(ctx, c.kubeAPIServer, 90*time.Second, func() bool { return c.getOK(ctx, "/readyz") })
}

// startControllerManager runs kube-controller-manager with the admin's
// credentials: ClusterRole aggregation, namespace deletion, garbage
// collection and ServiceAccounts behave as in a real cluster. It serves
// nothing (--secure-port=0) and needs no leader election.
func (c *Cluster) startControllerManager(ctx context.Context) error {
	args := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--authentication-kubeconfig=" + c.Kubeconfig, "--authorization-kubeconfig=" + c.Kubeconfig,
		"--secure-port=0", "--leader-elect=false",
		"--service-account-private-key-file=" + c.pki.path(serviceAccountKey),
		"--root-ca-file=" + c.pki.path(caCert),
		// No nodes, no cloud: the controllers a GitOps tool's tests touch.
		"--controllers=*,-node-ipam-controller,-node-lifecycle-controller,-persistentvolume-binder-controller,-persistentvolume-attach-detach-controller",
	}
	args = append(args, c.opts.ControllerManagerArgs...)
	var err error
	c.controllerManager, err = startProcess("kube-controller-manager", c.logPath("kube-controller-manager"), c.tool("kube-controller-manager"), nil, args...)
	if err != nil {
		return err
	}
	// Its ServiceAccount controller making "default" in namespace default
	// shows it runs.
	return waitFor(ctx, c.controllerManager, 90*time.Second, func() bool {
		return c.getOK(ctx, "/api/v1/namespaces/default/serviceaccounts/default")
	})
}

// RestartAlumiini stops alumiini with SIGTERM, as a rollout or a node drain
// does, starts it again on the same data and waits until kube-apiserver
// serves its group again.
func (c *Cluster) RestartAlumiini(ctx context.Context) error {
	if err := c.StopAlumiini(); err != nil {
		return err
	}
	return c.StartAlumiini(ctx)
}

// StopAlumiini stops alumiini with SIGTERM and says whether it exited
// cleanly.
func (c *Cluster) StopAlumiini() error {
	c.alumiini.stop(30 * time.Second)
	if state := c.alumiini.cmd.ProcessState; state == nil || !state.Success() {
		return fmt.Errorf("alumiini did not exit cleanly on SIGTERM: %v", c.alumiini.err)
	}
	return nil
}

// StartAlumiini starts alumiini stopped by StopAlumiini on the same data
// and waits until kube-apiserver serves its group again.
func (c *Cluster) StartAlumiini(ctx context.Context) error {
	if err := c.startAlumiini(ctx); err != nil {
		return err
	}
	return waitFor(ctx, c.alumiini, 90*time.Second, func() bool {
		return c.getOK(ctx, "/apis/alumiini.false.systems/v1alpha1")
	})
}

func (c *Cluster) startAlumiini(ctx context.Context) error {
	kubeconfig := filepath.Join(c.opts.Dir, "alumiini.kubeconfig")
	if err := c.writeKubeconfig(kubeconfig, alumiiniClientCert, c.opts.Ports.KubeAPIServer); err != nil {
		return err
	}
	c.AlumiiniURL = fmt.Sprintf("https://127.0.0.1:%d", c.opts.Ports.Alumiini)
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(c.opts.Ports.Alumiini),
		"--tls-cert-file=" + c.pki.cert(alumiiniServingCert), "--tls-private-key-file=" + c.pki.key(alumiiniServingCert),
		"--etcd-data-dir=" + filepath.Join(c.opts.Dir, "alumiini-etcd"),
		"--git-cache-dir=" + filepath.Join(c.opts.Dir, "alumiini-git-cache"),
		"--webhook-bind-address=" + net.JoinHostPort("127.0.0.1", strconv.Itoa(c.opts.Ports.Webhook)),
		"--webhook-secret=" + alumiiniNamespace + "/" + WebhookSecretName,
		"--metrics-bind-address=" + net.JoinHostPort("127.0.0.1", strconv.Itoa(c.opts.Ports.Metrics)),
	}
	c.MetricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", c.opts.Ports.Metrics)
	c.WebhookURL = fmt.Sprintf("http://127.0.0.1:%d", c.opts.Ports.Webhook)
	args = append(args, c.opts.AlumiiniArgs...)
	if c.opts.FastStorage {
		args = append(args, "--etcd-unsafe-no-fsync")
	}
	var err error
	c.alumiini, err = startProcess("alumiini", c.logPath("alumiini"), c.opts.AlumiiniBinary, c.opts.AlumiiniEnv, args...)
	return err
}

// registerAPIService points kube-apiserver's aggregator at the local alumiini
// process and waits until requests for the group reach it.
func (c *Cluster) registerAPIService(ctx context.Context) error {
	ca, err := os.ReadFile(c.pki.path(caCert))
	if err != nil {
		return err
	}
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %[1]s
  namespace: %[2]s
spec:
  type: ExternalName
  externalName: localhost
  ports:
  - port: %[3]d
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: %[4]s
spec:
  group: alumiini.false.systems
  version: v1alpha1
  groupPriorityMinimum: 1000
  versionPriority: 15
  caBundle: %[5]s
  service:
    name: %[1]s
    namespace: %[2]s
    port: %[3]d
`, alumiiniService, alumiiniNamespace, c.opts.Ports.Alumiini, alumiiniAPIService, base64.StdEncoding.EncodeToString(ca))
	if _, err := c.KubectlInput(ctx, manifest, "apply", "-f", "-"); err != nil {
		return err
	}
	// The APIService can say Available while requests still fail, so wait for
	// the group's discovery document itself, through kube-apiserver.
	// kubectl explain and server-side apply also need the aggregated OpenAPI
	// v3 document, which kube-apiserver fetches from alumiini a little later.
	return waitFor(ctx, c.alumiini, 90*time.Second, func() bool {
		if !c.getOK(ctx, "/apis/alumiini.false.systems/v1alpha1") {
			return false
		}
		body, ok := c.get(ctx, "/openapi/v3")
		return ok && strings.Contains(body, `"apis/alumiini.false.systems/v1alpha1"`)
	})
}

// getOK reports whether GET path answers 200 for the admin.
func (c *Cluster) getOK(ctx context.Context, path string) bool {
	_, ok := c.get(ctx, path)
	return ok
}

// get returns the body of GET path on kube-apiserver as the admin, and
// whether it answered 200.
func (c *Cluster) get(ctx context.Context, path string) (string, bool) {
	body, err := c.adminGet(ctx, "", path, 0)
	return string(body), err == nil
}

// adminGet GETs path as the admin from host (kube-apiserver when empty) and
// returns the body of a 200 answer.
func (c *Cluster) adminGet(ctx context.Context, host, path string, timeout time.Duration) ([]byte, error) {
	config, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	if host != "" {
		config.Host = host
	}
	config.Timeout = timeout
	client, err := rest.HTTPClientFor(config)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, config.Host+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s%s: %s", config.Host, path, resp.Status)
	}
	return body, err
}

// ApplyExample creates the example repository on the git server and applies
// artifacts/examples/gitrepository.yaml pointing at it.
func (c *Cluster) ApplyExample(ctx context.Context) error {
	if err := c.Git.CreateRepository(ctx, "example", filepath.Join(c.opts.RepoRoot, "artifacts/examples/repository"), "main"); err != nil {
		return err
	}
	data, err := os.ReadFile(filepath.Join(c.opts.RepoRoot, "artifacts/examples/gitrepository.yaml"))
	if err != nil {
		return err
	}
	manifest := strings.ReplaceAll(string(data), exampleURLInFile, c.Git.BaseURL())
	if _, err := c.KubectlInput(ctx, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: example\n", "apply", "-f", "-"); err != nil {
		return err
	}
	_, err = c.KubectlInput(ctx, manifest, "apply", "-f", "-")
	return err
}

func (c *Cluster) applyFiles(ctx context.Context, files ...string) error {
	for _, f := range files {
		if _, err := c.Kubectl(ctx, "apply", "-f", filepath.Join(c.opts.RepoRoot, f)); err != nil {
			return err
		}
	}
	return nil
}

// Kubectl runs the real kubectl as the admin and returns its standard output.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	return c.KubectlInput(ctx, "", args...)
}

// KubectlInput runs kubectl with stdin.
func (c *Cluster) KubectlInput(ctx context.Context, stdin string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.tool("kubectl"), append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	cmd.Env = ChildEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &KubectlError{Args: args, Stderr: strings.TrimSpace(stderr.String()), Err: err}
	}
	return stdout.Bytes(), nil
}

// KubectlError is a failed kubectl run with what it printed on stderr.
type KubectlError struct {
	Args   []string
	Stderr string
	Err    error
}

func (e *KubectlError) Error() string {
	return fmt.Sprintf("kubectl %s: %v: %s", strings.Join(e.Args, " "), e.Err, e.Stderr)
}

// RESTConfig is the admin's client config.
func (c *Cluster) RESTConfig() (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
}

// KubectlPath is the kubectl binary the cluster uses.
func (c *Cluster) KubectlPath() string { return c.tool("kubectl") }

// Ports returns the ports in use.
func (c *Cluster) Ports() Ports { return c.opts.Ports }

// LogPath is the log file of a component: etcd, kube-apiserver, alumiini, git.
func (c *Cluster) LogPath(component string) string { return c.logPath(component) }

func (c *Cluster) writeKubeconfig(file, clientCert string, port int) error {
	config := clientcmdapi.NewConfig()
	config.Clusters["local"] = &clientcmdapi.Cluster{
		Server:               fmt.Sprintf("https://127.0.0.1:%d", port),
		CertificateAuthority: c.pki.path(caCert),
	}
	config.AuthInfos["local"] = &clientcmdapi.AuthInfo{
		ClientCertificate: c.pki.cert(clientCert),
		ClientKey:         c.pki.key(clientCert),
	}
	config.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "local", Namespace: "default"}
	config.CurrentContext = "local"
	return clientcmd.WriteToFile(*config, file)
}

// AlumiiniPID is the process id of alumiini, or 0.
func (c *Cluster) AlumiiniPID() int {
	if c.alumiini == nil || c.alumiini.exited() {
		return 0
	}
	return c.alumiini.cmd.Process.Pid
}

// Metrics returns the Prometheus text of kube-apiserver's /metrics, or of
// alumiini's own when fromAlumiini, read as the admin.
func (c *Cluster) Metrics(ctx context.Context, fromAlumiini bool) (string, error) {
	host := ""
	if fromAlumiini {
		host = c.AlumiiniURL
	}
	body, err := c.adminGet(ctx, host, "/metrics", 0)
	return string(body), err
}

// CACertPath is the cluster CA's certificate, which signs kube-apiserver's
// serving certificate (what a pod finds as ca.crt next to its token).
func (c *Cluster) CACertPath() string { return c.pki.path(caCert) }

// AlumiiniBinary is the alumiini command the cluster runs.
func (c *Cluster) AlumiiniBinary() string { return c.opts.AlumiiniBinary }

// AlumiiniGet reads path from alumiini's secure port as the admin.
func (c *Cluster) AlumiiniGet(ctx context.Context, path string) ([]byte, error) {
	return c.adminGet(ctx, c.AlumiiniURL, path, 0)
}

// Profile writes a CPU profile of alumiini over the given time to file.
func (c *Cluster) Profile(ctx context.Context, file string, over time.Duration) error {
	return c.profile(ctx, c.AlumiiniURL, file, over)
}

// ProfileKubeAPIServer writes a CPU profile of kube-apiserver over the given
// time to file; it needs --profiling in KubeAPIServerArgs.
func (c *Cluster) ProfileKubeAPIServer(ctx context.Context, file string, over time.Duration) error {
	return c.profile(ctx, "", file, over)
}

func (c *Cluster) profile(ctx context.Context, host, file string, over time.Duration) error {
	path := fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(over.Seconds()))
	data, err := c.adminGet(ctx, host, path, over+30*time.Second)
	if err != nil {
		return err
	}
	return os.WriteFile(file, data, 0o644)
}

// PIDs are the process ids of the components still running.
func (c *Cluster) PIDs() []int {
	var pids []int
	for _, p := range []*process{c.alumiini, c.controllerManager, c.kubeAPIServer, c.etcd} {
		if p != nil && !p.exited() {
			pids = append(pids, p.cmd.Process.Pid)
		}
	}
	return pids
}

// ComponentPIDs are the process ids of the components still running, by
// name: alumiini, kube-controller-manager, kube-apiserver, etcd.
func (c *Cluster) ComponentPIDs() map[string]int {
	pids := map[string]int{}
	for name, p := range map[string]*process{"alumiini": c.alumiini, "kube-controller-manager": c.controllerManager,
		"kube-apiserver": c.kubeAPIServer, "etcd": c.etcd} {
		if p != nil && !p.exited() {
			pids[name] = p.cmd.Process.Pid
		}
	}
	return pids
}

// Stop stops alumiini first (it drains and flushes its etcd), then
// kube-apiserver, etcd and the git server.
func (c *Cluster) Stop() {
	for _, p := range []*process{c.alumiini, c.controllerManager, c.kubeAPIServer, c.etcd} {
		if p != nil {
			p.stop(30 * time.Second)
		}
	}
	if c.Git != nil {
		c.Git.Close()
	}
}

// waitFor polls ready until it returns true, failing early with the log of
// p when p exits.
func waitFor(ctx context.Context, p *process, timeout time.Duration, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if p.exited() {
			return p.failure()
		}
		if ready() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s; see %s", p.name, timeout, p.logFile)
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), fmt.Errorf("waiting for %s", p.name))
		case <-time.After(200 * time.Millisecond):
		}
	}
}
