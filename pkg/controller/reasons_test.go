package controller

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/falsesystems/alumiini/pkg/apply"
)

// TestEveryReasonIsInTheREADME: each reason alumiini can write into a
// condition or an Event (the Reason… constants of the packages that write
// them) is listed, with what to do, in the README's Troubleshooting.
func TestEveryReasonIsInTheREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	start := strings.Index(section, "## Troubleshooting")
	if start < 0 {
		t.Fatal("the README has no Troubleshooting section")
	}
	section = section[start:]
	if end := strings.Index(section[1:], "\n## "); end >= 0 {
		section = section[:end+1]
	}
	found := 0
	for _, dir := range []string{".", "../apply", "../git"} {
		for _, reason := range reasonConstants(t, dir) {
			found++
			if !strings.Contains(section, "`"+reason+"`") {
				t.Errorf("reason %s (%s) is not in the README's Troubleshooting", reason, dir)
			}
		}
	}
	if found < 20 {
		t.Fatalf("found only %d reasons: the scan is broken", found)
	}
}

// reasonConstants returns the values of the string constants named Reason…
// in the Go files of dir (tests excluded).
func reasonConstants(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	fset := token.NewFileSet()
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range spec.Names {
				if !strings.HasPrefix(name.Name, "Reason") || i >= len(spec.Values) {
					continue
				}
				if lit, ok := spec.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					value, _ := strconv.Unquote(lit.Value)
					reasons = append(reasons, value)
				}
			}
			return true
		})
	}
	return reasons
}

// notFailures are the reasons that report progress or success, or that
// only wait for something else (a dependency, a health check, a suspend):
// they need no fix.
var notFailures = map[string]bool{
	ReasonProgressing: true, ReasonSucceeded: true, ReasonSuspended: true, ReasonDrifted: true,
	ReasonHealthy: true, ReasonHealthCheckPending: true, ReasonRolledOut: true, ReasonRolloutProgressing: true,
	ReasonDependencyNotReady: true, ReasonDriftDetected: true, ReasonDriftCorrected: true, ReasonHealSuspended: true,
}

// TestEveryFailureSaysHowToFixIt: each reason a sync can fail or stop with
// carries, in the status message and the Event, one line on what to do.
func TestEveryFailureSaysHowToFixIt(t *testing.T) {
	for _, dir := range []string{".", "../apply", "../git"} {
		for _, reason := range reasonConstants(t, dir) {
			if notFailures[reason] {
				continue
			}
			if fixes[reason] == "" {
				t.Errorf("reason %s (%s) has no fix", reason, dir)
			}
		}
	}
	if got := withFix(ReasonEmptyRender, "commit abc renders no objects", maxMessageBytes); !strings.Contains(got, "To fix: ") || !strings.Contains(got, ".alumiini-allow-empty") {
		t.Errorf("withFix: %q", got)
	}
	// A message too long for an Event is cut; its fix is not.
	long := strings.Repeat("ConfigMap team/x could not be deleted; ", 100)
	if got := withFix(apply.ReasonPruneFailed, long, eventMessageBytes); len(got) > eventMessageBytes ||
		!strings.HasSuffix(got, fixes[apply.ReasonPruneFailed]) || !strings.Contains(got, "… (truncated). To fix: ") {
		t.Errorf("a long message with its fix, in %d bytes: %q", eventMessageBytes, got)
	}
}
