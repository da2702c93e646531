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
// a write that happened. The server is a stand-in written for the test: no
// such server runs in our test clusters.
func TestAWriteWhoseMetadataAnswerCannotBeReadIsReadWhole(t *testing.T) {
	for name, answer := range map[string]string{
		"a Status of success":        `{"apiVersion":"v1","kind":"Status","metadata":{},"status":"Success"}`,
		"an object without metadata": `{"apiVersion":"example.com/v1","kind":"Widget","spec":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			server := newWidgetServer(t, http.StatusOK, answer)
			written, err := server.applier().applyOne(context.Background(), widget(), false)
			if err != nil {
				t.Fatalf("a write that happened failed: %v", err)
			}
			if got := server.patches.Load(); got != 2 {
				t.Errorf("%d PATCHes, want the write made again once", got)
			}
			if u, ok := written.(*unstructured.Unstructured); !ok || u.GetResourceVersion() != "7" {
				t.Errorf("the answer: %#v, want the whole object", written)
			}
		})
	}
}

// TestARefusedMetadataWriteIsNotMadeAgain: a write the server refuses is
// reported, naming what it refused, and not made again.
func TestARefusedMetadataWriteIsNotMadeAgain(t *testing.T) {
	server := newWidgetServer(t, http.StatusUnprocessableEntity,
		`{"apiVersion":"v1","kind":"Status","metadata":{},"status":"Failure","reason":"Invalid","code":422,"message":"spec.size: Invalid value"}`)
	_, err := server.applier().applyOne(context.Background(), widget(), false)
	var aerr *Error
	if !errors.As(err, &aerr) || aerr.Reason != ReasonApplyFailed || !strings.Contains(aerr.Message, "spec.size") {
		t.Errorf("the refusal: %v, want ApplyFailed naming spec.size", err)
	}
	if got := server.patches.Load(); got != 1 {
		t.Errorf("%d PATCHes, want the refused write made once", got)
	}
}

// widgetServer answers a PATCH asked for as metadata with metadataCode and
// metadataAnswer, and any other PATCH with the whole Widget.
type widgetServer struct {
	*httptest.Server
	patches atomic.Int32
}

func newWidgetServer(t *testing.T, metadataCode int, metadataAnswer string) *widgetServer {
	const whole = `{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","namespace":"team","resourceVersion":"7"}}`
	s := &widgetServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPatch {
			http.Error(w, "unexpected", http.StatusMethodNotAllowed)
			return
		}
		s.patches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(r.Header.Get("Accept"), "as=PartialObjectMetadata") {
			w.WriteHeader(metadataCode)
			_, _ = w.Write([]byte(metadataAnswer))
			return
		}
		_, _ = w.Write([]byte(whole))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *widgetServer) applier() *Applier {
	config := &rest.Config{Host: s.URL}
	return &Applier{Client: dynamic.NewForConfigOrDie(config), Metadata: metadata.NewForConfigOrDie(config)}
}

// widget is a Widget planned for writing.
func widget() *planned {
	obj := &unstructured.Unstructured{}
	obj.SetAPIVersion("example.com/v1")
	obj.SetKind("Widget")
	obj.SetName("w")
	obj.SetNamespace("team")
	return &planned{obj: manifest.Object{Unstructured: obj}, mapping: &meta.RESTMapping{
		Resource: schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}, Scope: meta.RESTScopeNamespace}}
}
