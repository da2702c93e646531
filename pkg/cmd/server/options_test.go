package server

import (
	"io"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// validateArgs parses args as the command would and validates the options.
func validateArgs(t *testing.T, args ...string) error {
	t.Helper()
	o := NewOptions(io.Discard, io.Discard)
	fs := pflag.NewFlagSet("alumiini", pflag.ContinueOnError)
	for _, set := range o.Flags().FlagSets {
		fs.AddFlagSet(set)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return o.Validate(nil)
}

// TestCapsOutOfRangeAreRefused: each error names the flag; the defaults
// pass.
func TestCapsOutOfRangeAreRefused(t *testing.T) {
	for arg, want := range map[string]string{
		"--max-watches-per-user=0":                   "--max-watches-per-user must be at least 1, got 0",
		"--max-concurrent-listings=0":                "--max-concurrent-listings must be at least 1, got 0",
		"--max-concurrent-listings-per-namespace=-1": "--max-concurrent-listings-per-namespace must not be negative, got -1",
	} {
		if err := validateArgs(t, arg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error saying %q", arg, err, want)
		}
	}
	if err := validateArgs(t); err != nil {
		t.Errorf("the defaults: %v", err)
	}
}
