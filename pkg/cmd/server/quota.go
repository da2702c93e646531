package server

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	genericadmissioninitializer "k8s.io/apiserver/pkg/admission/initializer"
	"k8s.io/apiserver/pkg/admission/plugin/resourcequota"
	quota "k8s.io/apiserver/pkg/quota/v1"
	"k8s.io/apiserver/pkg/quota/v1/generic"
	genericapiserver "k8s.io/apiserver/pkg/server"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini"
)

// enableResourceQuota makes ResourceQuotas of kube-apiserver count
// GitRepositories (count/gitrepositories.alumiini.false.systems), as every
// built-in namespaced resource is counted, so a cluster admin bounds how
// many a tenant may create: each one costs a worker, ref listings and
// storage in the process all tenants share. The admission plugin reads the
// quotas through the core API and writes their usage back, as kube-apiserver's
// own does; the quota controller of kube-controller-manager recounts them.
func (o *Options) enableResourceQuota() {
	admissionOptions := o.RecommendedOptions.Admission
	resourcequota.Register(admissionOptions.Plugins)
	admissionOptions.RecommendedPluginOrder = append(admissionOptions.RecommendedPluginOrder, resourcequota.PluginName)
	o.RecommendedOptions.ExtraAdmissionInitializers = func(*genericapiserver.RecommendedConfig) ([]admission.PluginInitializer, error) {
		return []admission.PluginInitializer{quotaConfiguration{gitRepositoryQuota()}}, nil
	}
}

func gitRepositoryQuota() quota.Configuration {
	count := generic.NewObjectCountEvaluator(alumiini.Resource("gitrepositories"), notListedHere, "")
	return generic.NewConfiguration([]quota.Evaluator{count}, map[schema.GroupResource]struct{}{})
}

// notListedHere: admission charges each created object and never lists;
// recounting a namespace is the quota controller's work, which lists through
// the API.
func notListedHere(namespace string) ([]runtime.Object, error) {
	return nil, fmt.Errorf("alumiini's quota admission does not recount namespace %q", namespace)
}

// quotaConfiguration hands the configuration to the plugin that wants it.
type quotaConfiguration struct{ configuration quota.Configuration }

func (q quotaConfiguration) Initialize(plugin admission.Interface) {
	if wants, ok := plugin.(genericadmissioninitializer.WantsQuotaConfiguration); ok {
		wants.SetQuotaConfiguration(q.configuration)
	}
}
