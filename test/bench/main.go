// Command bench measures how fast alumiini brings many GitRepositories to
// Ready on the local control plane: N GitRepositories over N/10 git
// repositories, each path holding a Deployment (replicas 0), a
// ServiceAccount, a Service and a ConfigMap for its own namespace. It prints
// the time from creating them all to all Ready, alumiini's RSS, and the API
// requests made. Run it with `make bench` (N=100 and N=1000).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	clientset "github.com/falsesystems/alumiini/pkg/generated/clientset/versioned"
	"github.com/falsesystems/alumiini/test/gitserver"
	"github.com/falsesystems/alumiini/test/localcluster"
)

var cpuProfile = flag.String("cpuprofile", "", "write a CPU profile of alumiini during the (last) run to this file")

func main() {
	counts := flag.String("n", "100", "comma-separated numbers of GitRepositories, one run each")
	flag.Parse()
	for _, field := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n < 10 {
			fmt.Fprintf(os.Stderr, "bench: -n wants numbers of at least 10, got %q\n", field)
			os.Exit(2)
		}
		if err := run(n); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
	}
}

func run(n int) error {
	dir, err := os.MkdirTemp("", "alumiini-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cluster, err := localcluster.StartForTest(dir, false)
	if err != nil {
		return err
	}
	defer cluster.Stop()
	ctx := context.Background()
	config, err := cluster.RESTConfig()
	if err != nil {
		return err
	}
	config.QPS, config.Burst = 1000, 2000
	kube := kubernetes.NewForConfigOrDie(config)
	client := clientset.NewForConfigOrDie(config)

	fmt.Fprintf(os.Stderr, "preparing %d git repositories and %d namespaces\n", n/10, n)
	for r := 0; r < n/10; r++ {
		files := map[string]gitserver.File{}
		for p := 0; p < 10; p++ {
			for name, content := range objects(fmt.Sprintf("app%d", p)) {
				files[fmt.Sprintf("apps/p%d/%s", p, name)] = gitserver.File{Content: content}
			}
		}
		if _, err := cluster.Git.Commit(ctx, fmt.Sprintf("bench%03d", r), "main", files); err != nil {
			return err
		}
	}
	if err := parallel(n, 16, func(i int) error {
		_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%04d", i)}}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}); err != nil {
		return err
	}

	kubeBefore, err := requestTotal(ctx, cluster, false)
	if err != nil {
		return err
	}
	alumiiniBefore, err := requestTotal(ctx, cluster, true)
	if err != nil {
		return err
	}
	cpuBefore := cpuSeconds(cluster.PIDs())
	profiled := make(chan error, 1)
	if *cpuProfile != "" {
		go func() { profiled <- cluster.Profile(ctx, *cpuProfile, 15*time.Second) }()
	} else {
		profiled <- nil
	}
	start := time.Now()
	if err := parallel(n, 16, func(i int) error {
		repo := &v1alpha1.GitRepository{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%04d", i), Namespace: "default"},
			Spec: v1alpha1.GitRepositorySpec{
				URL:             fmt.Sprintf("%s/bench%03d.git", cluster.Git.BaseURL(), i/10),
				Path:            fmt.Sprintf("apps/p%d", i%10),
				TargetNamespace: fmt.Sprintf("bench-%04d", i),
				Interval:        "10m",
			},
		}
		_, err := client.AlumiiniV1alpha1().GitRepositories("default").Create(ctx, repo, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	created := time.Since(start)
	// Watch rather than poll: listing 1,000 objects through the aggregator
	// every few milliseconds would cost more CPU than what is measured.
	if err := waitAllReady(ctx, client, n, start); err != nil {
		return err
	}
	allReady := time.Since(start)
	cpuAfter := cpuSeconds(cluster.PIDs())
	if err := <-profiled; err != nil {
		fmt.Fprintf(os.Stderr, "bench: profiling: %v\n", err)
	}
	kubeAfter, err := requestTotal(ctx, cluster, false)
	if err != nil {
		return err
	}
	alumiiniAfter, err := requestTotal(ctx, cluster, true)
	if err != nil {
		return err
	}
	rss := rssMiB(cluster.AlumiiniPID())
	fmt.Printf("N=%d GitRepositories over %d git repositories, %d objects\n", n, n/10, 4*n)
	fmt.Printf("  created all in            %8.2fs\n", created.Seconds())
	fmt.Printf("  created to all Ready      %8.2fs\n", allReady.Seconds())
	fmt.Printf("  alumiini RSS              %8.1f MiB\n", rss)
	names := []string{"alumiini", "kube-apiserver", "etcd"}
	for i, name := range names {
		if i < len(cpuAfter) && i < len(cpuBefore) {
			fmt.Printf("  CPU seconds %-14s %8.2f\n", name, cpuAfter[i]-cpuBefore[i])
		}
	}
	fmt.Printf("  kube-apiserver requests   %8.0f  (%.1f per GitRepository; includes the %d creates)\n",
		kubeAfter-kubeBefore, (kubeAfter-kubeBefore)/float64(n), n)
	fmt.Printf("  alumiini API requests     %8.0f  (%.1f per GitRepository; includes the %d creates)\n",
		alumiiniAfter-alumiiniBefore, (alumiiniAfter-alumiiniBefore)/float64(n), n)
	for i := 0; i < 5; i++ {
		time.Sleep(time.Second)
	}
	fmt.Printf("  alumiini RSS idle after 5s %7.1f MiB\n", rssMiB(cluster.AlumiiniPID()))
	return nil
}

func waitAllReady(ctx context.Context, client clientset.Interface, n int, start time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	repos := client.AlumiiniV1alpha1().GitRepositories("default")
	list, err := repos.List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	ready := map[string]bool{}
	note := func(repo *v1alpha1.GitRepository) {
		for _, c := range repo.Status.Conditions {
			if c.Type == v1alpha1.ConditionReady {
				ready[repo.Name] = c.Status == metav1.ConditionTrue
			}
		}
	}
	for i := range list.Items {
		note(&list.Items[i])
	}
	w, err := repos.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		return err
	}
	defer w.Stop()
	count := func() int {
		c := 0
		for _, ok := range ready {
			if ok {
				c++
			}
		}
		return c
	}
	for count() < n {
		select {
		case event, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("the watch ended with %d of %d Ready", count(), n)
			}
			if repo, ok := event.Object.(*v1alpha1.GitRepository); ok {
				note(repo)
			}
		case <-ctx.Done():
			return fmt.Errorf("only %d of %d Ready after %s", count(), n, time.Since(start).Round(time.Second))
		}
	}
	return nil
}

func objects(app string) map[string]string {
	return map[string]string{
		"deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ` + app + `
spec:
  replicas: 0
  selector:
    matchLabels: {app: ` + app + `}
  template:
    metadata:
      labels: {app: ` + app + `}
    spec:
      serviceAccountName: ` + app + `
      containers:
      - name: app
        image: registry.k8s.io/pause:3.10
`,
		"serviceaccount.yaml": "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: " + app + "\n",
		"service.yaml":        "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + app + "\nspec:\n  selector: {app: " + app + "}\n  ports:\n  - port: 80\n",
		"configmap.yaml":      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + app + "\ndata:\n  greeting: hello\n",
	}
}

func parallel(n, workers int, f func(int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := f(i); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	return <-errs
}

// requestTotal sums apiserver_request_total from a server's /metrics.
func requestTotal(ctx context.Context, c *localcluster.Cluster, fromAlumiini bool) (float64, error) {
	text, err := c.Metrics(ctx, fromAlumiini)
	if err != nil {
		return 0, err
	}
	var total float64
	scanner := bufio.NewScanner(strings.NewReader(text))
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		fields := strings.Fields(line)
		if v, err := strconv.ParseFloat(fields[len(fields)-1], 64); err == nil {
			total += v
		}
	}
	return total, nil
}

// cpuSeconds returns the user+system CPU time of each process.
func cpuSeconds(pids []int) []float64 {
	var out []float64
	for _, pid := range pids {
		data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			out = append(out, 0)
			continue
		}
		fields := strings.Fields(string(data)[strings.LastIndexByte(string(data), ')')+2:])
		utime, _ := strconv.ParseFloat(fields[11], 64)
		stime, _ := strconv.ParseFloat(fields[12], 64)
		out = append(out, (utime+stime)/100)
	}
	return out
}

func rssMiB(pid int) float64 {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			fields := strings.Fields(line)
			kb, _ := strconv.ParseFloat(fields[1], 64)
			return kb / 1024
		}
	}
	return 0
}
