// Command alumiini is GitOps for Kubernetes: one process that serves the
// alumiini.false.systems API behind kube-apiserver and syncs GitRepositories.
package main

import (
	"os"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"github.com/falsesystems/alumiini/pkg/cmd/server"
	"github.com/falsesystems/alumiini/pkg/kustomizeproc"
)

func main() {
	// alumiini re-executes itself to build kustomizations in a bounded child.
	if len(os.Args) > 1 && os.Args[1] == kustomizeproc.Subcommand {
		kustomizeproc.Main(os.Args[2:])
	}
	// The signal context is cancelled on SIGTERM or SIGINT; the server then
	// lets syncs that are writing finish, drains, and stops its embedded
	// etcd, before Run returns.
	ctx := genericapiserver.SetupSignalContext()
	cmd := server.NewCommand(ctx, server.NewOptions(os.Stdout, os.Stderr))
	os.Exit(cli.Run(cmd))
}
