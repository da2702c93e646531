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

// TestAWatchCapUnderOneIsRefused: the error names the flag.
func TestAWatchCapUnderOneIsRefused(t *testing.T) {
	err := validateArgs(t, "--max-watches-per-user=0")
	if want := "--max-watches-per-user must be at least 1, got 0"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%v, want an error saying %q", err, want)
	}
}

// TestAListingCapUnderOneIsRefused: the error names the flag; the default
// passes.
func TestAListingCapUnderOneIsRefused(t *testing.T) {
	err := validateArgs(t, "--max-concurrent-listings=0")
	if want := "--max-concurrent-listings must be at least 1, got 0"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("%v, want an error saying %q", err, want)
	}
	if err := validateArgs(t); err != nil && strings.Contains(err.Error(), "--max-concurrent-listings") {
		t.Errorf("the default: %v", err)
	}
}
