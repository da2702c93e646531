package apply

import (
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// maxErrors is how many object errors one sync reports in full. A bad commit
// of thousands of objects would otherwise write megabytes into the status,
// the sync result and the Events.
const maxErrors = 10

// joinCapped joins the non-nil errors, keeping the first maxErrors and
// counting the rest.
func joinCapped(errs []error) error {
	var kept []error
	more := 0
	for _, err := range errs {
		switch {
		case err == nil:
		case len(kept) < maxErrors:
			kept = append(kept, err)
		default:
			more++
		}
	}
	if more > 0 {
		kept = append(kept, fmt.Errorf("and %d more objects failed", more))
	}
	return errors.Join(kept...)
}

// unservedKind says a kind is not served in words a repository's author
// acts on, and stays a NoMatch error for callers that look for one.
type unservedKind struct {
	gvk schema.GroupVersionKind
	err error
}

func (u unservedKind) Error() string {
	return fmt.Sprintf("the cluster does not serve %s: is its CRD installed (or its APIService available)?",
		u.gvk.GroupVersion().WithKind(u.gvk.Kind))
}

func (u unservedKind) Unwrap() error { return u.err }
