// Command localup runs the local control plane of `make dev` in the
// foreground until Ctrl-C: etcd, kube-apiserver, a git server and alumiini,
// with the example GitRepository applied. hack/local-up.sh builds what it
// needs and starts it; hack/local-down.sh stops a detached one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/falsesystems/alumiini/test/localcluster"
)

func main() {
	var opts localcluster.Options
	flag.StringVar(&opts.Dir, "dir", envOr("ALUMIINI_DEV_DIR", "_output/local"), "state directory (ALUMIINI_DEV_DIR)")
	flag.StringVar(&opts.ToolsDir, "tools", "", "directory with etcd, kube-apiserver and kubectl")
	flag.StringVar(&opts.AlumiiniBinary, "alumiini", "_output/bin/alumiini", "alumiini binary")
	flag.Parse()
	if err := run(opts); err != nil {
		fmt.Fprintf(os.Stderr, "local-up: %v\n", err)
		os.Exit(1)
	}
}

func run(opts localcluster.Options) error {
	var err error
	if opts.RepoRoot, err = os.Getwd(); err != nil {
		return err
	}
	for _, p := range []*string{&opts.Dir, &opts.ToolsDir, &opts.AlumiiniBinary} {
		if *p, err = filepath.Abs(*p); err != nil {
			return err
		}
	}
	opts.Ports = localcluster.DefaultPorts
	for name, port := range map[string]*int{
		"ALUMIINI_DEV_ETCD_PORT": &opts.Ports.Etcd, "ALUMIINI_DEV_ETCD_PEER_PORT": &opts.Ports.EtcdPeer,
		"ALUMIINI_DEV_KUBE_PORT": &opts.Ports.KubeAPIServer, "ALUMIINI_DEV_PORT": &opts.Ports.Alumiini,
		"ALUMIINI_DEV_GIT_PORT": &opts.Ports.Git, "ALUMIINI_DEV_WEBHOOK_PORT": &opts.Ports.Webhook, "ALUMIINI_DEV_METRICS_PORT": &opts.Ports.Metrics,
	} {
		if v := os.Getenv(name); v != "" {
			if *port, err = strconv.Atoi(v); err != nil {
				return fmt.Errorf("%s=%q is not a port number", name, v)
			}
		}
	}
	opts.Progress = os.Stdout
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return err
	}
	release, err := lock(opts.Dir)
	if err != nil {
		return err
	}
	defer release()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	started := time.Now()
	cluster, err := localcluster.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer cluster.Stop()
	if err := writePIDs(opts.Dir, cluster.PIDs()); err != nil {
		return err
	}
	fmt.Println("==> example repository and GitRepository")
	if err := cluster.ApplyExample(ctx); err != nil {
		return err
	}
	envFile, err := writeEnv(opts, cluster)
	if err != nil {
		return err
	}
	printUsage(opts, cluster, envFile, time.Since(started))
	if err := os.WriteFile(filepath.Join(opts.Dir, "ready"), nil, 0o644); err != nil {
		return err
	}
	defer os.Remove(filepath.Join(opts.Dir, "ready"))

	<-ctx.Done()
	fmt.Println("==> stopping")
	return nil
}

func writeEnv(opts localcluster.Options, c *localcluster.Cluster) (string, error) {
	file := filepath.Join(opts.Dir, "env")
	content := fmt.Sprintf(`# Source this file to use the local control plane: . %[1]s
export KUBECONFIG=%[2]s
export PATH=%[3]s:$PATH
# Repositories are $ALUMIINI_GIT_BASE_URL/NAME.git for each bare repo in %[4]s/NAME.git.
export ALUMIINI_GIT_BASE_URL=%[5]s
# The push webhook receiver: POST to $ALUMIINI_WEBHOOK_URL/hooks/github (gitlab,
# gitea, bitbucket, bitbucket-server, generic), signed with the platform secret.
export ALUMIINI_WEBHOOK_URL=%[7]s
export ALUMIINI_WEBHOOK_SECRET=%[8]s
# alumiini's metrics, without credentials: curl $ALUMIINI_METRICS_URL
export ALUMIINI_METRICS_URL=%[9]s
`, file, c.Kubeconfig, opts.ToolsDir, filepath.Join(opts.Dir, "git"), c.Git.BaseURL(), c.AlumiiniURL, c.WebhookURL, c.WebhookSecret, c.MetricsURL)
	return file, os.WriteFile(file, []byte(content), 0o644)
}

func printUsage(opts localcluster.Options, c *localcluster.Cluster, envFile string, took time.Duration) {
	p := c.Ports()
	fmt.Printf(`
alumiini is up (%s):
  kube-apiserver  https://127.0.0.1:%d   log %s
  etcd            http://127.0.0.1:%d    log %s
  alumiini        %s   log %s
  git server      %s    repos in %s
  webhooks        %s/hooks/PROVIDER (platform secret in $ALUMIINI_WEBHOOK_SECRET)

Use it:
  . %s
  kubectl get gitrepositories
  kubectl create --raw /apis/alumiini.false.systems/v1alpha1/namespaces/default/gitrepositories/example/sync -f - <<<'{}'
  kubectl explain gitrepository.spec

Ctrl-C (or hack/local-down.sh) stops everything.
`, took.Round(100*time.Millisecond), p.KubeAPIServer, c.LogPath("kube-apiserver"), p.Etcd, c.LogPath("etcd"),
		c.AlumiiniURL, c.LogPath("alumiini"), c.Git.BaseURL(), filepath.Join(opts.Dir, "git"), c.WebhookURL, envFile)
}

// lock makes sure one local-up runs per state directory. A lock left by a
// killed run is taken over, after stopping the processes that run left behind.
func lock(dir string) (func(), error) {
	pidFile := filepath.Join(dir, "local-up.pid")
	if data, err := os.ReadFile(pidFile); err == nil {
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		if pid > 0 && alive(pid) && pid != os.Getpid() {
			return nil, fmt.Errorf("already running (pid %d) with state in %s; stop it with hack/local-down.sh or Ctrl-C", pid, dir)
		}
		fmt.Printf("==> cleaning up after a run that was killed (pid %d)\n", pid)
		killLeftovers(dir)
	}
	_ = os.Remove(filepath.Join(dir, "ready"))
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, err
	}
	return func() {
		_ = os.Remove(pidFile)
		_ = os.Remove(filepath.Join(dir, "pids"))
	}, nil
}

func writePIDs(dir string, pids []int) error {
	var lines []string
	for _, pid := range pids {
		lines = append(lines, strconv.Itoa(pid))
	}
	return os.WriteFile(filepath.Join(dir, "pids"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// killLeftovers stops component processes of an earlier run, but only those
// whose command line still names this state directory, so a reused pid is
// never hit.
func killLeftovers(dir string) {
	data, err := os.ReadFile(filepath.Join(dir, "pids"))
	if err != nil {
		return
	}
	for _, field := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(field)
		if err != nil || !alive(pid) {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !strings.Contains(string(cmdline), dir) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// alive reports whether pid runs; a zombie, whose parent has not reaped it
// yet, counts as gone.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}
