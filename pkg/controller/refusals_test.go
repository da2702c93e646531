package controller

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A 429 is told to the request's note with the server's message, and
// client-go still reads the whole body; requests without a note, and
// answers other than 429, are left alone.
func TestRefusalsAreToldToTheRequestsNote(t *testing.T) {
	const status = `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too many watches: at most 100","reason":"TooManyRequests","code":429}`
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fine" {
			return
		}
		w.Header().Set("Retry-After", "10")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, status)
	}))
	defer server.Close()
	client := &http.Client{Transport: notingRefusals(http.DefaultTransport)}
	get := func(ctx context.Context, path string) string {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, server.URL+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	var heard []string
	ctx := withRefusalNote(context.Background(), func(err error) { heard = append(heard, err.Error()) })
	if body := get(ctx, "/refused"); body != status {
		t.Errorf("the body client-go reads: %q, want the whole Status", body)
	}
	get(ctx, "/fine")
	get(context.Background(), "/refused")
	if len(heard) != 1 || !strings.Contains(heard[0], "429") || !strings.Contains(heard[0], "too many watches: at most 100") {
		t.Errorf("heard %q, want the one refusal with the server's message", heard)
	}
}
