// Package e2e drives alumiini the way users do: through a real kube-apiserver
// with aggregation and the real kubectl, on the local control plane of
// test/localcluster (the same one `make dev` runs).
package e2e

import (
	"fmt"
	"os"
	"regexp"
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
	sinkURL, stopSink, err := startCDEventsSink()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stopSink()
	if cluster, err = localcluster.StartForTest(dir, false, "--cdevents-sink-url="+sinkURL); err != nil {
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
		if err := checkSyncLines(string(data)); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
			code = 1
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

var (
	recordStart    = regexp.MustCompile(`^[IWEF]\d{4} `)
	syncLine       = regexp.MustCompile(`\] "(Synced|Sync failed|Compared drifted objects with git)"`)
	repositoryPair = regexp.MustCompile(` gitRepository="[a-z0-9-]+/[a-z0-9.-]+"`)
	commitPair     = regexp.MustCompile(` commit="[0-9a-f]{40}"`)
)

// logRecords splits klog's text output into records: a multi-line value
// (err=<...>) continues its record on the lines that follow.
func logRecords(log string) []string {
	var records []string
	for _, line := range strings.Split(log, "\n") {
		if recordStart.MatchString(line) || len(records) == 0 {
			records = append(records, line)
		} else {
			records[len(records)-1] += "\n" + line
		}
	}
	return records
}

// checkSyncLines: every line about a sync names its GitRepository (as
// klog.KObj renders it) and, once a sync got to one, the commit; no line
// uses the old lower-case key.
func checkSyncLines(log string) error {
	synced := 0
	for _, line := range logRecords(log) {
		if strings.Contains(line, " gitrepository=") {
			return fmt.Errorf("a log line uses the key gitrepository, not gitRepository: %s", line)
		}
		m := syncLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if !repositoryPair.MatchString(line) {
			return fmt.Errorf("a sync's log line does not name its GitRepository: %s", line)
		}
		if m[1] != "Sync failed" && !commitPair.MatchString(line) {
			return fmt.Errorf("a sync's log line does not name its commit: %s", line)
		}
		if m[1] == "Synced" {
			synced++
		}
	}
	if synced == 0 {
		return fmt.Errorf("alumiini's log has no \"Synced\" line, though the tests synced")
	}
	return nil
}
