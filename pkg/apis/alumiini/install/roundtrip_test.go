package install

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/apitesting/roundtrip"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/fuzzer"
)

// TestRoundTripTypes fills every kind of the group with random data and checks
// that internal → v1alpha1 → JSON → internal loses nothing.
func TestRoundTripTypes(t *testing.T) {
	roundtrip.RoundTripTestForAPIGroup(t, Install, fuzzer.Funcs)
}
