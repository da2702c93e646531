package apply

import (
	"context"
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAPanicOnOneObjectFailsItsApplyOnly: the apply's goroutines run
// outside the supervisor's recovery; a panic in one (here in the Observe
// hook) fails that object's apply, naming it, instead of ending the process
// and the API server and etcd with it.
func TestAPanicOnOneObjectFailsItsApplyOnly(t *testing.T) {
	a := newApplier(t)
	ns := namespace(t, a)
	objects := render(t, "a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n")
	opts := Options{DefaultNamespace: ns, Observe: func(Entry, metav1.Object) { panic("a hook gone wrong") }}
	_, err := a.Apply(context.Background(), Owner{Namespace: "default", Name: "panics"}, objects, opts)
	var aerr *Error
	if !errors.As(err, &aerr) || aerr.Reason != ReasonApplyFailed || !strings.Contains(aerr.Object, "a.yaml") {
		t.Fatalf("a panic while writing: %v, want ApplyFailed naming the object from a.yaml", err)
	}
}
