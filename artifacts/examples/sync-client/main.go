// Command sync-client asks alumiini to sync one GitRepository now and waits
// for the result, with the generated typed client: what `kubectl create
// --raw .../gitrepositories/NAME/sync` does, from Go. The README quotes its
// sync function; a test runs it against the local control plane.
//
//	go run ./artifacts/examples/sync-client -namespace default -name example
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
	clientset "github.com/falsesystems/alumiini/pkg/generated/clientset/versioned"
)

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster alumiini serves")
	namespace := flag.String("namespace", "default", "namespace of the GitRepository")
	name := flag.String("name", "", "name of the GitRepository")
	flag.Parse()
	if err := run(*kubeconfig, *namespace, *name); err != nil {
		fmt.Fprintln(os.Stderr, "sync-client:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, namespace, name string) error {
	if name == "" {
		return fmt.Errorf("-name is required")
	}
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return fmt.Errorf("loading %s: %w", kubeconfig, err)
	}
	client, err := clientset.NewForConfig(config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	result, err := syncNow(ctx, client, namespace, name)
	if err != nil {
		return err
	}
	fmt.Printf("%s %s %s\n", result.Status.Phase, result.Status.Commit, result.Status.Message)
	if result.Status.Phase != v1alpha1.PhaseSynced {
		return fmt.Errorf("the sync did not succeed")
	}
	return nil
}

// syncNow asks for a sync of namespace/name and waits up to 20 seconds for
// its result (phase Synced or Failed, the commit, what changed).
func syncNow(ctx context.Context, client clientset.Interface, namespace, name string) (*v1alpha1.GitRepositorySyncRequest, error) {
	timeout := int32(20)
	request := &v1alpha1.GitRepositorySyncRequest{
		Spec: v1alpha1.GitRepositorySyncRequestSpec{Wait: true, TimeoutSeconds: &timeout},
	}
	return client.AlumiiniV1alpha1().GitRepositories(namespace).Sync(ctx, name, request, metav1.CreateOptions{})
}
