// Command kube-controller-manager is the upstream kube-controller-manager,
// built from the module proxy at the same release as kube-apiserver, so the
// local control plane aggregates ClusterRoles, deletes namespaces (which
// needs discovery of alumiini's aggregated group), collects garbage and
// issues ServiceAccount tokens as a real cluster does.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
