// Package apiserver assembles the alumiini aggregated API server: the scheme,
// the alumiini.false.systems group and its storages on a generic API server.
package apiserver

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini"
	"github.com/falsesystems/alumiini/pkg/apis/alumiini/install"
	gitrepositorystorage "github.com/falsesystems/alumiini/pkg/registry/alumiini/gitrepository/storage"
)

var (
	// Scheme knows every type the server serves, internal and versioned.
	Scheme = runtime.NewScheme()
	// Codecs serialise the types of Scheme.
	Codecs = serializer.NewCodecFactory(Scheme)
	// Serializer is what the server offers clients: JSON and YAML. Our types
	// have no protobuf encoding, and clients that prefer protobuf (the
	// namespace controller deleting a namespace's GitRepositories) would get
	// an error instead of falling back to JSON: namespace deletion hung.
	Serializer runtime.NegotiatedSerializer = withoutProtobuf{Codecs}
)

type withoutProtobuf struct{ runtime.NegotiatedSerializer }

func (s withoutProtobuf) SupportedMediaTypes() []runtime.SerializerInfo {
	var infos []runtime.SerializerInfo
	for _, info := range s.NegotiatedSerializer.SupportedMediaTypes() {
		if info.MediaType != runtime.ContentTypeProtobuf {
			infos = append(infos, info)
		}
	}
	return infos
}

func init() {
	install.Install(Scheme)
	// The generic server decodes options such as ListOptions as the
	// unversioned meta/v1 kinds; register them where it looks.
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	Scheme.AddUnversionedTypes(schema.GroupVersion{Group: "", Version: "v1"},
		&metav1.Status{},
		&metav1.APIVersions{},
		&metav1.APIGroupList{},
		&metav1.APIGroup{},
		&metav1.APIResourceList{},
	)
}

// ExtraConfig holds what alumiini adds to the generic server config.
type ExtraConfig struct {
	// StopStorage releases storage the server owns (the embedded etcd) once
	// the server has shut down. May be nil.
	StopStorage func()
	// PruneFinalizer is added to new GitRepositories with prune: true when
	// this server's controller runs (and so will remove it); empty otherwise.
	PruneFinalizer string
	// DefaultServiceAccount is what a GitRepository without
	// serviceAccountName applies as; empty means alumiini's own identity,
	// which only users allowed to escalate may give a GitRepository.
	DefaultServiceAccount string
}

// Config is the whole server configuration.
type Config struct {
	GenericConfig *genericapiserver.RecommendedConfig
	ExtraConfig   ExtraConfig
}

type completedConfig struct {
	GenericConfig genericapiserver.CompletedConfig
	ExtraConfig   *ExtraConfig
}

// CompletedConfig is a Config with every default filled in. Its private inner
// type makes an incomplete config impossible to pass to New.
type CompletedConfig struct {
	*completedConfig
}

// Complete fills in the fields left unset. It mutates the receiver.
func (cfg *Config) Complete() CompletedConfig {
	return CompletedConfig{&completedConfig{
		GenericConfig: cfg.GenericConfig.Complete(),
		ExtraConfig:   &cfg.ExtraConfig,
	}}
}

// Server is the alumiini API server.
type Server struct {
	GenericAPIServer *genericapiserver.GenericAPIServer
	// Controller is the running controller, once the post-start hook has
	// started it; nil when it is disabled. Webhook receivers trigger syncs
	// through it.
	Controller Triggerer
	// FinishWrites, if set, runs as a stop begins, while the server still
	// serves, and returns by its context's end (finishWritesTimeout): the
	// controller lets syncs that are writing finish.
	FinishWrites func(context.Context)
	stopStorage  func()
	audit        *drainBoundAudit // nil without an audit backend
	stopping     chan struct{}    // closed once FinishWrites returned
}

// Triggerer makes a GitRepository sync now.
type Triggerer interface {
	Trigger(namespace, name string) bool
}

// New builds the server from a completed config and installs the API group.
func (c completedConfig) New() (*Server, error) {
	generic, err := c.GenericConfig.New("alumiini", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, fmt.Errorf("building the generic API server: %w", err)
	}
	s := &Server{GenericAPIServer: generic, stopStorage: c.ExtraConfig.StopStorage}
	stopping, err := s.prepareStop()
	if err != nil {
		return nil, err
	}

	gitRepositories, err := gitrepositorystorage.NewStorage(Scheme, c.GenericConfig.RESTOptionsGetter, gitrepositorystorage.Options{
		PruneFinalizer:        c.ExtraConfig.PruneFinalizer,
		Authorizer:            c.GenericConfig.Authorization.Authorizer,
		DefaultServiceAccount: c.ExtraConfig.DefaultServiceAccount,
		Stopping:              stopping,
	})
	if err != nil {
		return nil, err
	}
	group := genericapiserver.NewDefaultAPIGroupInfo(alumiini.GroupName, Scheme, metav1.ParameterCodec, Codecs)
	group.NegotiatedSerializer = Serializer
	group.VersionedResourcesStorageMap["v1alpha1"] = map[string]rest.Storage{
		"gitrepositories":        gitRepositories.GitRepository,
		"gitrepositories/status": gitRepositories.Status,
		"gitrepositories/sync":   gitRepositories.Sync,
	}
	if err := generic.InstallAPIGroup(&group); err != nil {
		return nil, fmt.Errorf("installing the %s API group: %w", alumiini.GroupName, err)
	}
	return s, nil
}
