package server

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/klog/v2"

	"github.com/falsesystems/alumiini/pkg/controller"
	"github.com/falsesystems/alumiini/pkg/webhook"
)

// WebhookOptions configure the push-webhook receiver.
type WebhookOptions struct {
	BindAddress    string
	CertFile       string
	KeyFile        string
	PlatformSecret string
	MaxBodyBytes   int64
	RatePerSecond  float64
	Burst          int
}

func newWebhookOptions() WebhookOptions {
	return WebhookOptions{MaxBodyBytes: 1 << 20, RatePerSecond: 10, Burst: 20}
}

// AddFlags adds the webhook receiver's flags.
func (o *WebhookOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.BindAddress, "webhook-bind-address", o.BindAddress,
		"host:port the push-webhook receiver listens on (paths /hooks/github, /hooks/gitlab, /hooks/gitea, /hooks/bitbucket, "+
			"/hooks/bitbucket-server, /hooks/generic). Empty: no receiver.")
	fs.StringVar(&o.CertFile, "webhook-tls-cert-file", o.CertFile, "Certificate the webhook receiver serves TLS with; empty: plain HTTP.")
	fs.StringVar(&o.KeyFile, "webhook-tls-private-key-file", o.KeyFile, "Private key of --webhook-tls-cert-file.")
	fs.StringVar(&o.PlatformSecret, "webhook-secret", o.PlatformSecret,
		"NAMESPACE/NAME of the platform-wide webhook Secret: one key per provider (github, gitlab, gitea, bitbucket, "+
			"bitbucket-server, generic); a push signed with it may trigger every GitRepository on the pushed URL.")
	fs.Int64Var(&o.MaxBodyBytes, "webhook-max-body-bytes", o.MaxBodyBytes, "Largest webhook body accepted (413 above).")
	fs.Float64Var(&o.RatePerSecond, "webhook-rate-limit", o.RatePerSecond, "Webhook requests per second accepted from one source address (429 above).")
	fs.IntVar(&o.Burst, "webhook-rate-burst", o.Burst, "Burst of --webhook-rate-limit.")
}

// Validate checks the webhook options.
func (o *WebhookOptions) Validate() []error {
	var errs []error
	if (o.CertFile == "") != (o.KeyFile == "") {
		errs = append(errs, fmt.Errorf("--webhook-tls-cert-file and --webhook-tls-private-key-file go together"))
	}
	if o.PlatformSecret != "" {
		if _, err := o.platformSecret(); err != nil {
			errs = append(errs, err)
		}
	}
	if o.MaxBodyBytes < 1024 {
		errs = append(errs, fmt.Errorf("--webhook-max-body-bytes must be at least 1024, got %d", o.MaxBodyBytes))
	}
	if o.RatePerSecond <= 0 || o.Burst < 1 {
		errs = append(errs, fmt.Errorf("--webhook-rate-limit must be positive and --webhook-rate-burst at least 1"))
	}
	return errs
}

func (o *WebhookOptions) platformSecret() (types.NamespacedName, error) {
	if o.PlatformSecret == "" {
		return types.NamespacedName{}, nil
	}
	namespace, name, ok := strings.Cut(o.PlatformSecret, "/")
	if !ok || namespace == "" || name == "" || strings.Contains(name, "/") {
		return types.NamespacedName{}, fmt.Errorf("--webhook-secret must be NAMESPACE/NAME, got %q", o.PlatformSecret)
	}
	return types.NamespacedName{Namespace: namespace, Name: name}, nil
}

// startWebhook listens for push webhooks for c and serves them until ctx
// ends, reading Secrets with the controller's own identity. A port that
// cannot be bound fails the start: webhooks silently off are what users of
// other tools complain about.
func (o *WebhookOptions) startWebhook(ctx context.Context, c *controller.Controller, target *rest.Config) error {
	if o.BindAddress == "" {
		klog.InfoS("The webhook receiver is off (no --webhook-bind-address)")
		return nil
	}
	kube, err := kubernetes.NewForConfig(target)
	if err != nil {
		return fmt.Errorf("building the webhook receiver's client: %w", err)
	}
	if err := webhook.RegisterMetrics(legacyregistry.Registerer()); err != nil {
		return fmt.Errorf("registering webhook metrics: %w", err)
	}
	platform, _ := o.platformSecret()
	handler := webhook.NewHandler(webhook.Options{
		Repositories:   c.Repositories,
		Trigger:        c.Push,
		PlatformSecret: platform,
		MaxBodyBytes:   o.MaxBodyBytes,
		RatePerSecond:  o.RatePerSecond,
		Burst:          o.Burst,
		Secret: func(ctx context.Context, namespace, name string) (map[string][]byte, error) {
			secret, err := kube.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) {
					return nil, err
				}
				return nil, fmt.Errorf("reading Secret %s/%s: %w", namespace, name, err)
			}
			return secret.Data, nil
		},
	})
	server := webhook.NewServer(o.BindAddress, o.CertFile, o.KeyFile, handler)
	if err := server.Listen(); err != nil {
		return fmt.Errorf("the webhook receiver: %w", err)
	}
	go func() {
		if err := server.Run(ctx); err != nil {
			klog.ErrorS(err, "The webhook receiver stopped")
		}
	}()
	return nil
}
