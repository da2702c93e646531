package apply

import (
	"errors"
	"fmt"
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
