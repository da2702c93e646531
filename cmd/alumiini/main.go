// Command alumiini is GitOps for Kubernetes: one process that serves the
// alumiini.false.systems API behind kube-apiserver and syncs GitRepositories.
package main

import (
	"os"
	"runtime/debug"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"github.com/falsesystems/alumiini/pkg/cmd/server"
	"github.com/falsesystems/alumiini/pkg/kustomizeproc"
)

// defaultGCPercent is the garbage collector's target unless GOGC is set:
// the heap may grow by half its live size between collections instead of
// Go's default, all of it. Go keeps from the kernel what the heap grew to,
// so this bounds what a settled process holds: at 1,000 GitRepositories in
// make bench, 167-170 MiB resident against 189-209 MiB at GOGC=100, for
// more of the collector's CPU while a large sync allocates (docs/scale.md,
// Memory).
const defaultGCPercent = 50

func main() {
	// alumiini re-executes itself to build kustomizations in a bounded child;
	// it lives for one build, under its own memory limit, at Go's GC default.
	if len(os.Args) > 1 && os.Args[1] == kustomizeproc.Subcommand {
		kustomizeproc.Main(os.Args[2:])
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	// The signal context is cancelled on SIGTERM or SIGINT; the server then
	// drains, and stops its embedded etcd, before Run returns.
	ctx := genericapiserver.SetupSignalContext()
	cmd := server.NewCommand(ctx, server.NewOptions(os.Stdout, os.Stderr))
	os.Exit(cli.Run(cmd))
}
