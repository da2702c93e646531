package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/klog/v2"

	"github.com/falsesystems/alumiini/pkg/apiserver"
)

// serviceDNSNames are the names the aggregator checks alumiini's serving
// certificate against: the Service of artifacts/deploy. The self-signed
// certificate holds them; elsewhere, give --tls-cert-file.
var serviceDNSNames = []string{"alumiini.alumiini-system.svc", "alumiini.alumiini-system.svc.cluster.local"}

var apiServices = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// addCABundleSync keeps the caBundle of the APIService --apiservice-name in
// step with the self-signed serving certificate made at this start, so the
// aggregator trusts this process without anyone copying a certificate.
func (o *Options) addCABundleSync(server *apiserver.Server) error {
	if o.APIServiceName == "" || o.standalone {
		return nil
	}
	serving := o.RecommendedOptions.SecureServing.ServerCert
	if serving.CertKey.CertFile != "" || serving.GeneratedCert == nil {
		klog.InfoS("Serving with --tls-cert-file: the APIService's caBundle is left to whoever issues it", "apiservice", o.APIServiceName)
		return nil
	}
	return server.GenericAPIServer.AddPostStartHook("alumiini-apiservice-cabundle", func(hook genericPostStartHookContext) error {
		cert, _ := serving.GeneratedCert.CurrentCertKeyContent()
		config, err := targetConfig(o.kubeconfig)
		if err != nil {
			return fmt.Errorf("--apiservice-name: %w", err)
		}
		client, err := dynamic.NewForConfig(config)
		if err != nil {
			return err
		}
		patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"caBundle": base64.StdEncoding.EncodeToString(cert)}})
		// Retried in the background: the APIService may be applied after
		// alumiini starts, and until then kube-apiserver cannot reach it anyway.
		go func() {
			err := wait.PollUntilContextCancel(hook.Context, 2*time.Second, true, func(ctx context.Context) (bool, error) {
				_, err := client.Resource(apiServices).Patch(ctx, o.APIServiceName, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "alumiini"})
				if err != nil {
					klog.ErrorS(err, "Setting the APIService's caBundle; retrying", "apiservice", o.APIServiceName)
					return false, nil
				}
				klog.InfoS("The APIService trusts this start's serving certificate", "apiservice", o.APIServiceName)
				return true, nil
			})
			if err != nil && hook.Context.Err() == nil {
				klog.ErrorS(err, "Giving up on the APIService's caBundle", "apiservice", o.APIServiceName)
			}
		}()
		return nil
	})
}
