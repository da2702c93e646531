package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// refusalNoteKey is the context key of a request's refusal note.
type refusalNoteKey struct{}

// withRefusalNote returns ctx carrying note, which hears of every 429 a
// request made with it is answered. client-go retries a 429 that carries
// Retry-After up to ten times before its caller sees an error, and a
// reflector retries a refused watch for ever without telling its error
// handler: only the transport sees the refusal as it happens.
func withRefusalNote(ctx context.Context, note func(error)) context.Context {
	return context.WithValue(ctx, refusalNoteKey{}, note)
}

// notingRefusals wraps a client's transport so that requests whose context
// carries a refusal note tell it of each 429, with the server's message.
func notingRefusals(next http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(req)
		note, ok := req.Context().Value(refusalNoteKey{}).(func(error))
		if !ok || err != nil || resp.StatusCode != http.StatusTooManyRequests {
			return resp, err
		}
		note(refusal(resp))
		return resp, nil
	})
}

// maxRefusalBytes bounds what of a 429's body is read for its message.
const maxRefusalBytes = 4 << 10

// refusal reads the message of a 429's Status, leaving the body for
// client-go to read again.
func refusal(resp *http.Response) error {
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxRefusalBytes))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), resp.Body), resp.Body}
	var status metav1.Status
	if json.Unmarshal(head, &status) == nil && status.Message != "" {
		return fmt.Errorf("refused (429): %s", status.Message)
	}
	return fmt.Errorf("refused (429 Too Many Requests)")
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
