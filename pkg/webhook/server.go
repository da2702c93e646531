package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// shutdownGrace is how long Run lets requests in flight finish.
const shutdownGrace = 5 * time.Second

// Server serves the webhook receiver over HTTP, or HTTPS when given a
// certificate and key. Its timeouts leave no room for slow-loris clients.
type Server struct {
	addr, certFile, keyFile string
	srv                     *http.Server

	mu sync.Mutex
	ln net.Listener
}

// NewServer returns a server for h on addr, serving TLS when both certFile
// and keyFile are set. It listens only when Listen or Run is called.
func NewServer(addr, certFile, keyFile string, h http.Handler) *Server {
	return &Server{
		addr:     addr,
		certFile: certFile,
		keyFile:  keyFile,
		srv: &http.Server{
			Handler:           recoverPanics(h),
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       15 * time.Second,
			WriteTimeout:      15 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    32 << 10,
			ErrorLog:          klog.NewStandardLogger("INFO"),
		},
	}
}

// Listen binds the address, so that Addr can tell it before Run serves.
// Calling it again does nothing.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	if (s.certFile == "") != (s.keyFile == "") {
		return errors.New("serving webhooks over TLS needs both a certificate and a key file")
	}
	var config *tls.Config
	if s.certFile != "" {
		// Loaded here so a bad pair fails at start, not at the first push.
		cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
		if err != nil {
			return fmt.Errorf("loading the webhook TLS certificate: %w", err)
		}
		// HTTP/1.1 only: senders post one small request at a time, and
		// HTTP/2 would bring its own stream limits to tune.
		config = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listening for webhooks on %s: %w", s.addr, err)
	}
	if config != nil {
		ln = tls.NewListener(ln, config)
	}
	s.ln = ln
	return nil
}

// Addr is the address the server listens on, "" before it does.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Run listens (unless Listen already did) and serves until ctx ends, then
// shuts down, giving requests in flight up to five seconds to finish.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()

	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(ln) }()
	klog.InfoS("Serving push webhooks", "address", ln.Addr().String(), "tls", s.certFile != "")

	select {
	case err := <-served:
		return fmt.Errorf("serving webhooks on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := s.srv.Shutdown(shutdownCtx); err != nil {
		klog.ErrorS(err, "Shutting down the webhook server gracefully; closing what is left")
		_ = s.srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving webhooks on %s: %w", ln.Addr(), err)
	}
	return nil
}

// recoverPanics answers 500 when h panics, instead of net/http's dropped
// connection, whatever handler the server is given.
func recoverPanics(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if !logPanic(recover(), r.URL.Path) {
				return
			}
			// If h already wrote the header this only logs a superfluous
			// WriteHeader; the client sees a truncated answer.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"error":"internal error"}`+"\n")
		}()
		h.ServeHTTP(w, r)
	})
}

// logPanic logs v, a value recover returned, and reports whether there was a
// panic to answer; net/http's own way of aborting a response
// (http.ErrAbortHandler) is passed on.
func logPanic(v any, path string) bool {
	if v == nil {
		return false
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	klog.ErrorS(nil, "Webhook handler panicked", "path", path, "panic", fmt.Sprint(v))
	klog.V(4).InfoS("Webhook handler panic stack", "path", path, "stack", string(debug.Stack()))
	return true
}
