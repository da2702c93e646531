package gitserver

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// ListingHolder is a proxy in front of a Server whose first ref listing
// gets its answer from the server (the refs as they are then) and passes
// it on only once Release is called: a listing that reached the server
// before a push and is still on its way when the push is made.
type ListingHolder struct {
	// URL is the proxy's base URL, in place of the server's BaseURL.
	URL string
	// Listings counts the ref listings that came through.
	Listings          atomic.Int32
	answered, release chan struct{}
	once              sync.Once
	proxy             *httptest.Server
}

// HoldFirstListing starts a ListingHolder in front of s; Close stops it.
func (s *Server) HoldFirstListing() *ListingHolder {
	target, _ := url.Parse(s.BaseURL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	h := &ListingHolder{answered: make(chan struct{}), release: make(chan struct{})}
	proxy.ModifyResponse = func(resp *http.Response) error {
		if !strings.HasSuffix(resp.Request.URL.Path, "/info/refs") || h.Listings.Add(1) != 1 {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		close(h.answered)
		<-h.release
		return err
	}
	h.proxy = httptest.NewServer(proxy)
	h.URL = h.proxy.URL
	return h
}

// Answered is closed once the first listing has its answer from the server.
func (h *ListingHolder) Answered() <-chan struct{} { return h.answered }

// Release passes the first listing's answer on.
func (h *ListingHolder) Release() { h.once.Do(func() { close(h.release) }) }

// Close releases the first listing and stops the proxy.
func (h *ListingHolder) Close() {
	h.Release()
	h.proxy.Close()
}
