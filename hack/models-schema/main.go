// Command models-schema prints the OpenAPI v2 definitions of pkg/generated/openapi
// as one JSON document. hack/update-codegen.sh feeds it to the applyconfiguration
// generator, which needs the schemas to know each field's merge strategy.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/validation/spec"

	"github.com/falsesystems/alumiini/pkg/generated/openapi"
)

func main() {
	if err := printSchema(); err != nil {
		fmt.Fprintf(os.Stderr, "models-schema: %v\n", err)
		os.Exit(1)
	}
}

func printSchema() error {
	ref := func(name string) spec.Ref { return spec.MustCreateRef("#/definitions/" + name) }
	definitions := map[string]spec.Schema{}
	for name, def := range openapi.GetOpenAPIDefinitions(ref) {
		// Types with a v3-only schema carry their v2 form in an extension; the
		// generator reads v2, so prefer that form.
		if v2, ok := def.Schema.Extensions[common.ExtensionV2Schema].(spec.Schema); ok {
			definitions[name] = v2
			continue
		}
		definitions[name] = def.Schema
	}
	doc := spec.Swagger{SwaggerProps: spec.SwaggerProps{
		Swagger:     "2.0",
		Info:        &spec.Info{InfoProps: spec.InfoProps{Title: "alumiini", Version: "unversioned"}},
		Definitions: definitions,
	}}
	return json.NewEncoder(os.Stdout).Encode(&doc)
}
