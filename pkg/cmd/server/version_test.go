package server

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestVersionCommandAndFlag: `alumiini version` and `alumiini --version`
// print the stamped version without starting anything.
func TestVersionCommandAndFlag(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out bytes.Buffer
		cmd := NewCommand(context.Background(), NewOptions(&out, &out))
		cmd.SetOut(&out)
		cmd.SetArgs(args)
		if err := cmd.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if !strings.HasPrefix(out.String(), "alumiini ") || !strings.Contains(out.String(), "\ngo: go1.") {
			t.Errorf("%v printed %q", args, out.String())
		}
	}
}
