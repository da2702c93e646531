// Package e2e drives alumiini the way users do: through a real kube-apiserver
// with aggregation and the real kubectl, on the local control plane of
// test/localcluster (the same one `make dev` runs).
package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/falsesystems/alumiini/test/localcluster"
)

var cluster *localcluster.Cluster

// secretValues are credentials and webhook secrets tests gave alumiini; none
// may appear in its log (checked after every test has run).
var secretValues []string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "alumiini-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	if cluster, err = localcluster.StartForTest(dir, false); err != nil {
		fmt.Fprintf(os.Stderr, "starting the local control plane: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "local control plane ready in %s\n", time.Since(start).Round(100*time.Millisecond))
	code := m.Run()
	secretValues = append(secretValues, cluster.WebhookSecret)
	if data, err := os.ReadFile(cluster.LogPath("alumiini")); err == nil {
		for _, secret := range secretValues {
			if strings.Contains(string(data), secret) {
				fmt.Fprintf(os.Stderr, "FAIL: alumiini's log holds a secret a test gave it (%d bytes long)\n", len(secret))
				code = 1
			}
		}
	} else {
		fmt.Fprintf(os.Stderr, "FAIL: reading alumiini's log to check it holds no secret: %v\n", err)
		code = 1
	}
	if code != 0 {
		// The component logs are removed with the directory: show alumiini's end.
		if data, err := os.ReadFile(cluster.LogPath("alumiini")); err == nil {
			lines := strings.Split(string(data), "\n")
			if len(lines) > 40 {
				lines = lines[len(lines)-40:]
			}
			fmt.Fprintf(os.Stderr, "--- end of alumiini log ---\n%s\n", strings.Join(lines, "\n"))
		}
	}
	cluster.Stop()
	return code
}
