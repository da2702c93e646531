package apply

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestErrorsAreCapped(t *testing.T) {
	errs := make([]error, 5000)
	for i := range errs {
		if i%2 == 0 {
			errs[i] = &Error{Object: fmt.Sprintf("ConfigMap ns/cm-%d", i), Reason: ReasonDryRunFailed, Message: "refused"}
		}
	}
	err := joinCapped(errs)
	msg := err.Error()
	if got := strings.Count(msg, "refused"); got != maxErrors {
		t.Errorf("%d errors in full, want %d", got, maxErrors)
	}
	if !strings.Contains(msg, "and 2490 more objects failed") {
		t.Errorf("the rest is not counted: %s", msg)
	}
	var aerr *Error
	if !errors.As(err, &aerr) || aerr.Reason != ReasonDryRunFailed {
		t.Errorf("the first error's reason is lost: %v", err)
	}
	if joinCapped(make([]error, 3)) != nil {
		t.Error("no errors joined into one")
	}
}
