//go:build tools

// Package tools pins the code generators in go.mod so hack/update-codegen.sh
// runs the exact versions the rest of the module is built against.
package tools

import _ "k8s.io/code-generator"
