// Command bench measures alumiini at scale on the local control plane, next
// to kubectl in the same run. For each N: N GitRepositories over N/10 git
// repositories (or N with -distinct), each path a Deployment (replicas 0), a
// ServiceAccount, a Service and a ConfigMap for its own namespace. It
// reports the same 4N objects applied by `kubectl apply --server-side` from
// 8 processes (and dry-run by them first); alumiini's create → all Ready;
// for each, the CPU of every process and that CPU over the machine's cores
// (no phase can take less); alumiini's requests by verb; alumiini's memory
// empty and settled; one idle interval; and one push to a shared
// repository until all its GitRepositories show it. Run it with
// `make bench` (BENCH_N=100,1000 by default).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

type options struct {
	counts           []int
	distinct         bool
	interval         time.Duration
	kubectlWorkers   int
	jsonOut          string
	cpuProfile       string
	heapProfile      string
	idleProfile      string
	emptyProfile     string
	alumiiniEnv      string
	alumiiniArgs     string
	kcmQPS           int
	apiserverProfile string
}

func main() {
	var opts options
	counts := flag.String("n", "100", "comma-separated numbers of GitRepositories, one run each")
	flag.BoolVar(&opts.distinct, "distinct", false, "one git repository per GitRepository instead of one per 10")
	flag.DurationVar(&opts.interval, "interval", 2*time.Minute, "the GitRepositories' interval; one is measured idle")
	flag.IntVar(&opts.kubectlWorkers, "kubectl-processes", 8, "kubectl processes applying the same objects")
	flag.StringVar(&opts.jsonOut, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&opts.cpuProfile, "cpuprofile", "", "write a CPU profile of alumiini during the (last) sync to this file")
	flag.StringVar(&opts.heapProfile, "heapprofile", "", "write alumiini's settled heap profile (for go tool pprof) to this file")
	flag.StringVar(&opts.alumiiniEnv, "alumiini-env", "", "comma-separated NAME=VALUE added to alumiini's environment alone (e.g. GOGC=50)")
	flag.StringVar(&opts.alumiiniArgs, "alumiini-args", "", "comma-separated flags added to alumiini's (e.g. --watch-cache=false)")
	flag.StringVar(&opts.emptyProfile, "emptyprofile", "", "write a CPU profile of alumiini with no GitRepository, idle (50 s), to FILE")
	flag.StringVar(&opts.idleProfile, "idleprofile", "", "write CPU profiles of alumiini over the whole idle interval, 50 s each, to FILE, FILE.2, FILE.3, ...")
	flag.IntVar(&opts.kcmQPS, "kcm-qps", 0, "kube-controller-manager's --kube-api-qps (0: its default, 20); higher shortens the waits for it between phases at large N")
	flag.StringVar(&opts.apiserverProfile, "apiserverprofile", "", "write a CPU profile of kube-apiserver during the (last) sync to this file (it runs with --profiling)")
	flag.Parse()
	for _, field := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n < 10 {
			fmt.Fprintf(os.Stderr, "bench: -n wants numbers of at least 10, got %q\n", field)
			os.Exit(2)
		}
		opts.counts = append(opts.counts, n)
	}
	var results []*result
	for _, n := range opts.counts {
		r, err := run(n, opts)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: N=%d: %v\n", n, err)
			os.Exit(1)
		}
		r.print(os.Stdout)
		results = append(results, r)
	}
	if opts.jsonOut != "" {
		data, _ := json.MarshalIndent(results, "", "  ")
		if err := os.WriteFile(opts.jsonOut, append(data, '\n'), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
	}
}
