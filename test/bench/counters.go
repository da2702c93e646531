package main

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/falsesystems/alumiini/test/benchkit"
	"github.com/falsesystems/alumiini/test/localcluster"
)

// counters is what a phase is measured by, read before and after it.
type counters struct {
	cpu map[string]float64
	// client: alumiini's requests to kube-apiserver by method.
	client map[string]float64
	// kube: kube-apiserver's requests by verb (" dry-run" added), alumiini's
	// group left out; own: alumiini's API's by verb.
	kube, own map[string]float64
	// kubeWrites: kube-apiserver's writes (not dry-runs) by verb and
	// resource, "POST replicasets", all clients: who else was busy.
	kubeWrites map[string]float64
	// gc: CPU-s of alumiini's garbage collector (Go's runtime metric), part
	// of cpu["alumiini"]: what GOGC trades for memory.
	gc float64
}

func snapshot(ctx context.Context, c *localcluster.Cluster) (counters, error) {
	s := counters{cpu: map[string]float64{}}
	for name, pid := range c.ComponentPIDs() {
		s.cpu[name] = benchkit.CPUSeconds(pid)
	}
	var err error
	if s.kube, s.kubeWrites, err = kubeRequests(ctx, c); err != nil {
		return s, err
	}
	own, err := metricFamilies(ctx, c, true)
	if err != nil {
		return s, err
	}
	apiserver := fmt.Sprintf("127.0.0.1:%d", c.Ports().KubeAPIServer)
	s.client = sumBy(own["rest_client_requests_total"], func(l map[string]string) string {
		if l["host"] != apiserver {
			return ""
		}
		return l["method"]
	})
	s.own = sumBy(own["apiserver_request_total"], func(l map[string]string) string { return l["verb"] })
	s.gc = sumBy(own["go_cpu_classes_gc_total_cpu_seconds_total"], func(map[string]string) string { return "gc" })["gc"]
	return s, nil
}

// kubeRequests reads kube-apiserver's requests by verb (" dry-run" added;
// the bench's own, through the aggregator, left out), and its writes by
// verb and resource.
func kubeRequests(ctx context.Context, c *localcluster.Cluster) (byVerb, writes map[string]float64, err error) {
	kube, err := metricFamilies(ctx, c, false)
	if err != nil {
		return nil, nil, err
	}
	verbOf := func(l map[string]string) string {
		if l["group"] == "alumiini.false.systems" && l["resource"] != "" {
			return ""
		}
		if l["dry_run"] != "" {
			return l["verb"] + " dry-run"
		}
		return l["verb"]
	}
	byVerb = sumBy(kube["apiserver_request_total"], verbOf)
	writes = sumBy(kube["apiserver_request_total"], func(l map[string]string) string {
		if verb := verbOf(l); verb != "" && isWrite(verb) {
			return verb + " " + l["resource"]
		}
		return ""
	})
	return byVerb, writes, nil
}

// since is what happened between before and s.
func (s counters) since(before counters) counters {
	return counters{cpu: diff(s.cpu, before.cpu), client: diff(s.client, before.client), kube: diff(s.kube, before.kube),
		own: diff(s.own, before.own), kubeWrites: diff(s.kubeWrites, before.kubeWrites), gc: s.gc - before.gc}
}

// diff is what each counter of after grew by since before.
func diff(after, before map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// writes keeps the verbs that change something.
func writes(m map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if isWrite(k) {
			out[k] = v
		}
	}
	return out
}

// isWrite: verb (as snapshot keys it, " dry-run" added) changes something.
func isWrite(verb string) bool {
	switch strings.Fields(verb)[0] {
	case "POST", "PUT", "PATCH", "DELETE", "CREATE", "UPDATE", "APPLY", "DELETECOLLECTION":
		return !strings.HasSuffix(verb, "dry-run")
	}
	return false
}

func metricFamilies(ctx context.Context, c *localcluster.Cluster, fromAlumiini bool) (map[string]*dto.MetricFamily, error) {
	text, err := c.Metrics(ctx, fromAlumiini)
	if err != nil {
		return nil, err
	}
	// Keep only the families read here: parsing all of kube-apiserver's
	// metrics (histograms by resource) costs seconds.
	var kept strings.Builder
	scanner := bufio.NewScanner(strings.NewReader(text))
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		if strings.Contains(line, "apiserver_request_total") || strings.Contains(line, "rest_client_requests_total") ||
			strings.Contains(line, "go_cpu_classes_gc_total_cpu_seconds_total") {
			kept.WriteString(line + "\n")
		}
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(strings.NewReader(kept.String()))
}

// sumBy sums a counter's series by the key keyOf makes of their labels
// ("" leaves a series out).
func sumBy(family *dto.MetricFamily, keyOf func(map[string]string) string) map[string]float64 {
	out := map[string]float64{}
	if family == nil {
		return out
	}
	for _, m := range family.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if key := keyOf(labels); key != "" {
			out[key] += m.GetCounter().GetValue()
		}
	}
	return out
}

// goMemory is what alumiini's Go runtime holds after a forced collection,
// from pprof's heap profile (alumiini runs with --profiling).
type goMemory struct {
	// live: the heap's live objects (HeapAlloc); retained: the heap's
	// pages the runtime holds, live objects and free space not yet given
	// back to the kernel (HeapSys - HeapReleased); stacks: goroutine stacks.
	live, retained, stacks int64
}

func goMemoryAfterGC(ctx context.Context, c *localcluster.Cluster) (goMemory, error) {
	data, err := c.AlumiiniGet(ctx, "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return goMemory{}, fmt.Errorf("reading alumiini's heap profile: %w", err)
	}
	stats := map[string]int64{}
	for _, line := range strings.Split(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, "# ")
		if !ok {
			continue
		}
		name, value, ok := strings.Cut(rest, " = ")
		if !ok {
			continue
		}
		value, _, _ = strings.Cut(value, " ") // "Stack = inuse / sys"
		if n, err := strconv.ParseInt(value, 10, 64); err == nil {
			stats[name] = n
		}
	}
	for _, name := range []string{"HeapAlloc", "HeapSys", "HeapReleased", "Stack"} {
		if _, ok := stats[name]; !ok {
			return goMemory{}, fmt.Errorf("no %s in alumiini's heap profile", name)
		}
	}
	return goMemory{live: stats["HeapAlloc"], retained: stats["HeapSys"] - stats["HeapReleased"], stacks: stats["Stack"]}, nil
}
