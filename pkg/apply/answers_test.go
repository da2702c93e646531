package apply

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/falsesystems/alumiini/pkg/manifest"
)

// TestAWriteWhoseMetadataAnswerCannotBeReadIsReadWhole: an aggregated API
// server not built on k8s.io/apiserver may answer a write asked for as
// metadata with what the metadata client cannot read, after writing. The
// write is then made again and its whole answer read, rather than failing
// a write that happened; a write refused is not made again. The server
// here is a stand-in written for the test: such servers do not run here.
func TestAWriteWhoseMetadataAnswerCannotBeReadIsReadWhole(t *testing.T) {
	const whole = `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","namespace":"team","resourceVersion":"7"}}`
	for _, c := range []struct {
		name         string
		metadataCode int
		metadataBody string
		wantPatches  int32
		wantErr      bool
	}{
		{"a Status of success", http.StatusOK, `{"apiVersion":"v1","kind":"Status","metadata":{},"status":"Success"}`, 2, false},
		{"an object without metadata", http.StatusOK, `{"apiVersion":"example.com/v1","kind":"Widget","spec":{}}`, 2, false},
		{"a refusal", http.StatusUnprocessableEntity,
			`{"apiVersion":"v1","kind":"Status","metadata":{},"status":"Failure","reason":"Invalid","code":422,"message":"spec.size: Invalid value"}`, 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var patches atomic.Int32
			server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodPatch {
					http.Error(w, "unexpected", http.StatusMethodNotAllowed)
					return
				}
				patches.Add(1)
				w.Header().Set("Content-Type", "application/json")
				if strings.Contains(r.Header.Get("Accept"), "as=PartialObjectMetadata") {
					w.WriteHeader(c.metadataCode)
					_, _ = w.Write([]byte(c.metadataBody))
					return
				}
				_, _ = w.Write([]byte(whole))
			}))
			defer server.Close()
			config := &rest.Config{Host: server.URL}
			a := &Applier{Client: dynamic.NewForConfigOrDie(config), Metadata: metadata.NewForConfigOrDie(config)}
			obj := &unstructured.Unstructured{}
			obj.SetAPIVersion("example.com/v1")
			obj.SetKind("Widget")
			obj.SetName("w")
			obj.SetNamespace("team")
			p := &planned{obj: manifest.Object{Unstructured: obj}, mapping: &meta.RESTMapping{
				Resource: schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}, Scope: meta.RESTScopeNamespace}}

			written, err := a.applyOne(context.Background(), p, false)
			if got := patches.Load(); got != c.wantPatches {
				t.Errorf("%d PATCHes, want %d", got, c.wantPatches)
			}
			if c.wantErr {
				var aerr *Error
				if !errors.As(err, &aerr) || aerr.Reason != ReasonApplyFailed || !strings.Contains(aerr.Message, "spec.size") {
					t.Errorf("the refusal: %v, want ApplyFailed naming spec.size", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("a write that happened failed: %v", err)
			}
			if u, ok := written.(*unstructured.Unstructured); !ok || u.GetResourceVersion() != "7" {
				t.Errorf("the answer: %#v, want the whole object", written)
			}
		})
	}
}
