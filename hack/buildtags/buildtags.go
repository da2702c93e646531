// Package buildtags reads hack/build-tags: the build tags (one line,
// comma-separated, as go build -tags takes them) of every build of alumiini.
// make build, hack/local-up.sh, the Dockerfile, hack/image and the tests'
// builds all read that one file.
//
// kustomize_disable_go_plugin_support: kustomize's Go plugin loader imports
// the standard "plugin" package, and a binary that links "plugin" exports
// every symbol for plugins to bind to. alumiini never loads a Go plugin;
// without the loader the binary is 138 MB instead of 176 MB.
package buildtags

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// File is where the tags are kept, relative to the repository's root.
const File = "hack/build-tags"

// Read returns the tags kept in root's hack/build-tags.
func Read(root string) (string, error) {
	data, err := os.ReadFile(filepath.Join(root, File))
	if err != nil {
		return "", fmt.Errorf("reading the build tags: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}
