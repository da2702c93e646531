// Command kube-apiserver is the upstream kube-apiserver, built from the module
// proxy at the Kubernetes release that matches alumiini's k8s.io libraries, so
// the local control plane and the end-to-end tests run the real thing.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
