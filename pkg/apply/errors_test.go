package apply

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// TestAPIMessagesAreCut: an API error's message (an invalid value quoted
// from git, a webhook's text) is kept to maxAPIMessageBytes, cut between
// runes and saying how much went; a short one is kept whole.
func TestAPIMessagesAreCut(t *testing.T) {
	// "denied: " is 8 bytes and "€" 3: byte 1024 falls inside a rune.
	long := apierrors.NewBadRequest("denied: " + strings.Repeat("€", 100_000))
	msg := apiMessage(long)
	if len(msg) > maxAPIMessageBytes+32 || !utf8.ValidString(msg) || !strings.HasSuffix(msg, "bytes cut)") {
		t.Errorf("a 200 KB message became %d bytes (valid UTF-8: %v), ending %q", len(msg), utf8.ValidString(msg), msg[max(0, len(msg)-40):])
	}
	if !strings.HasPrefix(msg, "denied: €€") {
		t.Errorf("the cut message lost its start: %q", msg[:20])
	}
	if got := apiMessage(apierrors.NewBadRequest("denied: too many replicas")); got != "denied: too many replicas" {
		t.Errorf("a short message became %q", got)
	}
}
