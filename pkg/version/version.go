// Package version says which alumiini this is: set at build time with
// -ldflags "-X github.com/falsesystems/alumiini/pkg/version.Version=…"
// (the Makefile and the Dockerfile do), with the Go and Kubernetes library
// versions read from the binary's own build information.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set by the linker; "unknown" when built without the Makefile.
var (
	Version   = "unknown"
	Commit    = "unknown"
	BuildDate = "unknown"
)

// Info is what `alumiini version` prints.
type Info struct {
	Version, Commit, BuildDate, GoVersion, Platform string
	// Libraries are the versions of the Kubernetes libraries built in.
	Libraries map[string]string
}

// Get returns this binary's version information.
func Get() Info {
	info := Info{Version: Version, Commit: Commit, BuildDate: BuildDate, GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH, Libraries: map[string]string{}}
	if build, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range build.Deps {
			switch dep.Path {
			case "k8s.io/apiserver", "k8s.io/client-go", "go.etcd.io/etcd/server/v3", "github.com/go-git/go-git/v5", "sigs.k8s.io/kustomize/api":
				info.Libraries[dep.Path] = dep.Version
			}
		}
	}
	return info
}

// String is the multi-line form `alumiini version` prints.
func (i Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "alumiini %s\ncommit: %s\nbuilt: %s\ngo: %s %s\n", i.Version, i.Commit, i.BuildDate, i.GoVersion, i.Platform)
	for _, path := range []string{"k8s.io/apiserver", "k8s.io/client-go", "go.etcd.io/etcd/server/v3", "github.com/go-git/go-git/v5", "sigs.k8s.io/kustomize/api"} {
		if v, ok := i.Libraries[path]; ok {
			fmt.Fprintf(&b, "%s: %s\n", path, v)
		}
	}
	return b.String()
}
