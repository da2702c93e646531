// Package benchkit holds what alumiini's benchmarks share: the CPU time and
// memory of a process, read from /proc, and a signed push webhook.
package benchkit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// CPUSeconds is the user+system CPU time of a process, or -1.
func CPUSeconds(pid int) float64 {
	if pid == 0 {
		return -1
	}
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return -1
	}
	// Fields after the command name, which may hold spaces: utime and
	// stime are the 14th and 15th of the whole line, in clock ticks (100/s).
	fields := strings.Fields(string(data)[strings.LastIndexByte(string(data), ')')+2:])
	if len(fields) < 13 {
		return -1
	}
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / 100
}

// Resident is a process's resident set size and the part of it that maps
// files (the binary's pages, etcd's bbolt database), which the kernel may
// drop and read again; the rest is the process's own memory. A process
// that is gone is an error, not 0, so a dead alumiini can't read as one
// that shrank.
func Resident(pid int) (rss, files int64, err error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0, fmt.Errorf("reading the memory of process %d: %w", pid, err)
	}
	if rss, err = statusBytes(data, "VmRSS:"); err != nil {
		return 0, 0, fmt.Errorf("process %d: %w", pid, err)
	}
	if files, err = statusBytes(data, "RssFile:"); err != nil {
		return 0, 0, fmt.Errorf("process %d: %w", pid, err)
	}
	return rss, files, nil
}

func statusBytes(status []byte, field string) (int64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		if fields := strings.Fields(line); len(fields) >= 2 && fields[0] == field {
			kib, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s %q: %w", field, fields[1], err)
			}
			return kib << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s in its status (a zombie has none)", field)
}

// GitHubPush is a GitHub push event for Commit on main of the repository
// Repository describes (clone_url, and html_url or ssh_url if wanted).
type GitHubPush struct {
	Repository       map[string]string
	Commit, Delivery string
}

// Send posts the push to receiver (alumiini's .../hooks/github) signed with
// secret, and returns the answer's status and body.
func (p GitHubPush) Send(ctx context.Context, client *http.Client, receiver, secret string) (int, []byte, error) {
	body, err := json.Marshal(map[string]any{
		"ref":        "refs/heads/main",
		"after":      p.Commit,
		"repository": p.Repository,
	})
	if err != nil {
		return 0, nil, err
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, receiver, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", p.Delivery)
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("delivering the push webhook: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("reading the webhook's answer: %w", err)
	}
	return resp.StatusCode, raw, nil
}
