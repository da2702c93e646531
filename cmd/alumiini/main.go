// Command alumiini is GitOps for Kubernetes: one process that serves the
// alumiini.false.systems API behind kube-apiserver and syncs GitRepositories.
package main

import (
	"os"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"github.com/falsesystems/alumiini/pkg/cmd/server"
)

func main() {
	// The signal context is cancelled on SIGTERM or SIGINT; the server then
	// drains, and stops its embedded etcd, before Run returns.
	ctx := genericapiserver.SetupSignalContext()
	cmd := server.NewCommand(ctx, server.NewOptions(os.Stdout, os.Stderr))
	os.Exit(cli.Run(cmd))
}
