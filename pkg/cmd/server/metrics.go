package server

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/spf13/pflag"
	"k8s.io/component-base/metrics/legacyregistry"
	// client-go's requests to kube-apiserver (rest_client_requests_total
	// and their latencies), as every Kubernetes component shows them.
	_ "k8s.io/component-base/metrics/prometheus/restclient"
	"k8s.io/klog/v2"

	"github.com/falsesystems/alumiini/pkg/apiserver"
)

// MetricsOptions configure the plain-HTTP metrics listener.
type MetricsOptions struct {
	BindAddress string
}

// AddFlags adds the metrics listener's flag.
func (o *MetricsOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.BindAddress, "metrics-bind-address", o.BindAddress,
		"host:port serving /metrics over plain HTTP without authentication, for Prometheus to scrape without API "+
			"credentials (the same metrics are on the secure port's /metrics, behind authorization). Empty: off.")
}

// maxScrapes is how many scrapes of the plain listener run at once.
const maxScrapes = 2

// limitConcurrent runs at most n of next's requests at once; others wait, until
// their client gives up.
func limitConcurrent(n int, next http.Handler) http.Handler {
	slots := make(chan struct{}, n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			next.ServeHTTP(w, r)
		case <-r.Context().Done():
		}
	})
}

// sharedGather gathers at most once every so often, whoever asks, and hands
// every caller in between the same result (encoders only read it).
type sharedGather struct {
	gatherer prometheus.Gatherer
	every    time.Duration

	mu       sync.Mutex
	at       time.Time
	families []*dto.MetricFamily
	err      error
}

func (g *sharedGather) Gather() ([]*dto.MetricFamily, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if time.Since(g.at) >= g.every {
		g.families, g.err = g.gatherer.Gather()
		g.at = time.Now()
	}
	return g.families, g.err
}

// addMetricsListener serves /metrics on BindAddress once the server runs; a
// port that cannot be bound fails the start.
func (o *MetricsOptions) addMetricsListener(server *apiserver.Server) error {
	if o.BindAddress == "" {
		return nil
	}
	return server.GenericAPIServer.AddPostStartHook("alumiini-metrics", func(hook genericPostStartHookContext) error {
		listener, err := net.Listen("tcp", o.BindAddress)
		if err != nil {
			return fmt.Errorf("--metrics-bind-address: %w", err)
		}
		mux := http.NewServeMux()
		// Anyone on the pod network may reach this port: scrapes share one
		// gather a second and at most maxScrapes are encoded at once, so a
		// flood costs that much CPU at most; the rest wait their turn
		// rather than being refused.
		gather := &sharedGather{gatherer: legacyregistry.DefaultGatherer, every: time.Second}
		mux.Handle("/metrics", limitConcurrent(maxScrapes, promhttp.InstrumentMetricHandler(legacyregistry.Registerer(),
			promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 10 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
		go func() {
			<-hook.Context.Done()
			_ = srv.Close()
		}()
		go func() {
			if err := srv.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
				klog.ErrorS(err, "The metrics listener stopped")
			}
		}()
		klog.InfoS("Serving metrics", "address", listener.Addr().String())
		return nil
	})
}
