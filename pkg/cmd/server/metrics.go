package server

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
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

// maxScrapesInFlight bounds the unauthenticated listener's concurrent scrapes.
const maxScrapesInFlight = 2

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
		// Anyone on the pod network may reach this port: scrapes beyond two
		// at once are refused (503) rather than gathered in parallel.
		mux.Handle("/metrics", promhttp.HandlerFor(legacyregistry.DefaultGatherer,
			promhttp.HandlerOpts{MaxRequestsInFlight: maxScrapesInFlight}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
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
