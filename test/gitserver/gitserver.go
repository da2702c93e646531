// Package gitserver is a real git server for tests and `make dev`: Debian's
// `git http-backend` behind Go's net/http/cgi, on loopback, over HTTP or TLS,
// with optional basic or bearer authentication. It counts ref listings and
// fetches per repository and can cut a fetch off half-way, so tests observe
// from the server's side what a client did.
package gitserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Server serves the bare repositories of a directory over smart HTTP.
type Server struct {
	root     string
	server   *http.Server
	listener net.Listener
	scheme   string
	options  Options

	mu           sync.Mutex
	counts       map[string]*Requests
	breakFetches int
}

// Options configure a Server. The zero value serves plain HTTP without auth.
type Options struct {
	// TLS, when set, serves HTTPS with this config.
	TLS *tls.Config
	// Username and Password, when set, require HTTP basic authentication.
	Username, Password string
	// BearerToken, when set, requires "Authorization: Bearer <token>".
	BearerToken string
	// Log receives one line per request.
	Log io.Writer
	// AllowPush lets anonymous clients push (http-backend refuses by default).
	AllowPush bool
}

// Requests counts the requests for one repository.
type Requests struct {
	// RefListings are ref advertisements (GET info/refs?service=git-upload-pack).
	RefListings int
	// Fetches are pack negotiations (POST git-upload-pack).
	Fetches int
	// BytesSent is the size of all responses for the repository.
	BytesSent int64
}

// Start serves the bare repositories under root on addr (host:port; port 0
// picks one).
func Start(root, addr string, opts Options) (*Server, error) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		return nil, fmt.Errorf("the git server needs the git binary: %w", err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	listener, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("git server listening on %s: %w", addr, err)
	}
	s := &Server{root: root, listener: listener, scheme: "http", options: opts, counts: map[string]*Requests{}}
	backend := &cgi.Handler{
		Path: gitPath,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	if opts.AllowPush {
		backend.Env = append(backend.Env, "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.receivepack", "GIT_CONFIG_VALUE_0=true")
	}
	var logger *log.Logger
	logTo := opts.Log
	if logTo == nil {
		logTo = io.Discard
	} else {
		logger = log.New(logTo, "git ", log.LstdFlags|log.Lmicroseconds)
	}
	// The backend's stderr and the server's own errors (handshakes a test
	// refuses on purpose, cut transfers) go to the log, not the test output.
	backend.Logger = log.New(logTo, "git-http-backend ", log.LstdFlags)
	backend.Stderr = logTo
	s.server = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !s.authorized(r) {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				if logger != nil {
					logger.Printf("%s %s 401", r.Method, r.URL.RequestURI())
				}
				return
			}
			repo, fetch := s.count(r)
			if logger != nil {
				logger.Printf("%s %s", r.Method, r.URL.RequestURI())
			}
			cw := &countingWriter{ResponseWriter: w}
			if fetch && s.takeBreak() {
				cw.limit = 512
			}
			backend.ServeHTTP(cw, r)
			if repo != "" {
				s.addBytes(repo, cw.n)
			}
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(logTo, "git-server ", log.LstdFlags),
	}
	if opts.TLS != nil {
		s.scheme = "https"
		listener = tls.NewListener(listener, opts.TLS)
	}
	go func() {
		if err := s.server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) && logger != nil {
			logger.Printf("git server stopped: %v", err)
		}
	}()
	return s, nil
}

func (s *Server) authorized(r *http.Request) bool {
	switch {
	case s.options.BearerToken != "":
		return r.Header.Get("Authorization") == "Bearer "+s.options.BearerToken
	case s.options.Username != "":
		user, password, ok := r.BasicAuth()
		return ok && user == s.options.Username && password == s.options.Password
	}
	return true
}

// BreakNextFetches makes the next n fetches stop after a few hundred bytes of
// the pack, as a server that dies mid-transfer does.
func (s *Server) BreakNextFetches(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.breakFetches = n
}

func (s *Server) takeBreak() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.breakFetches > 0 {
		s.breakFetches--
		return true
	}
	return false
}

// countingWriter counts response bytes and, with a limit, cuts the
// connection off once the limit is passed.
type countingWriter struct {
	http.ResponseWriter
	n     int64
	limit int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.limit > 0 && w.n+int64(len(p)) > w.limit {
		if hj, ok := w.ResponseWriter.(http.Hijacker); ok {
			w.ResponseWriter.(http.Flusher).Flush()
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
			}
		}
		return 0, errors.New("connection cut by the test server")
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) addBytes(repo string, n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entry(repo).BytesSent += n
}

func (s *Server) entry(repo string) *Requests {
	c := s.counts[repo]
	if c == nil {
		c = &Requests{}
		s.counts[repo] = c
	}
	return c
}

// count records a ref listing or a fetch and returns the repository it was for.
func (s *Server) count(r *http.Request) (repo string, fetch bool) {
	path := r.URL.Path
	switch {
	case strings.HasSuffix(path, "/info/refs") && r.URL.Query().Get("service") == "git-upload-pack":
		repo = strings.TrimSuffix(path, "/info/refs")
	case strings.HasSuffix(path, "/git-upload-pack") && r.Method == http.MethodPost:
		repo, fetch = strings.TrimSuffix(path, "/git-upload-pack"), true
	default:
		return "", false
	}
	repo = strings.TrimPrefix(repo, "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.entry(repo)
	if fetch {
		c.Fetches++
	} else {
		c.RefListings++
	}
	return repo, fetch
}

// Requests returns the counts for a repository, e.g. "example.git".
func (s *Server) Requests(repo string) Requests {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.counts[repo]; c != nil {
		return *c
	}
	return Requests{}
}

// ResetCounts forgets what was counted so far.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts = map[string]*Requests{}
}

// BaseURL is the URL repositories are served under: BaseURL/NAME.git.
func (s *Server) BaseURL() string { return s.scheme + "://" + s.listener.Addr().String() }

// Root is the directory holding the bare repositories.
func (s *Server) Root() string { return s.root }

// Close stops serving.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.server.Shutdown(ctx)
}

// CreateRepository makes the bare repository NAME.git holding the files of
// contentDir as one commit on branch, unless it exists already.
func (s *Server) CreateRepository(ctx context.Context, name, contentDir, branch string) error {
	bare := filepath.Join(s.root, name+".git")
	if _, err := os.Stat(filepath.Join(bare, "HEAD")); err == nil {
		return nil
	}
	work, err := os.MkdirTemp("", "alumiini-repo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := os.CopyFS(work, os.DirFS(contentDir)); err != nil {
		return fmt.Errorf("copying %s: %w", contentDir, err)
	}
	steps := [][]string{
		{"init", "--quiet", "--initial-branch", branch, work},
		{"-C", work, "add", "--all"},
		{"-C", work, "commit", "--quiet", "--message", "Example manifests"},
		{"init", "--quiet", "--bare", "--initial-branch", branch, bare},
		{"-C", work, "push", "--quiet", bare, branch},
	}
	for _, args := range steps {
		if err := Git(ctx, args...); err != nil {
			return err
		}
	}
	return nil
}

// Git runs the git binary with a fixed identity and no user or system config,
// so results do not depend on the machine. The first argument may be -C DIR.
func Git(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=alumiini", "GIT_AUTHOR_EMAIL=dev@alumiini.invalid",
		"GIT_COMMITTER_NAME=alumiini", "GIT_COMMITTER_EMAIL=dev@alumiini.invalid")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// File is one file of a commit made with Commit: its content, or, when
// Symlink is set, a symbolic link to that target.
type File struct {
	Content string
	Symlink string
}

// Commit adds the files to branch of the bare repository NAME.git (creating
// the repository or the branch if needed), pushes, and returns the new commit.
// Files of earlier commits stay unless Remove names them.
func (s *Server) Commit(ctx context.Context, name, branch string, files map[string]File, remove ...string) (string, error) {
	bare := filepath.Join(s.root, name+".git")
	work, err := os.MkdirTemp("", "alumiini-commit-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	if _, err := os.Stat(filepath.Join(bare, "HEAD")); err != nil {
		if err := Git(ctx, "init", "--quiet", "--bare", "--initial-branch", branch, bare); err != nil {
			return "", err
		}
	}
	if err := Git(ctx, "init", "--quiet", "--initial-branch", branch, work); err != nil {
		return "", err
	}
	if out, _ := GitOutput(ctx, "--git-dir", bare, "rev-parse", "--verify", "--quiet", "refs/heads/"+branch); out != "" {
		if err := Git(ctx, "-C", work, "pull", "--quiet", "--depth", "1", bare, branch); err != nil {
			return "", err
		}
	}
	for path, f := range files {
		full := filepath.Join(work, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", err
		}
		_ = os.Remove(full)
		if f.Symlink != "" {
			err = os.Symlink(f.Symlink, full)
		} else {
			err = os.WriteFile(full, []byte(f.Content), 0o644)
		}
		if err != nil {
			return "", err
		}
	}
	for _, path := range remove {
		if err := os.RemoveAll(filepath.Join(work, path)); err != nil {
			return "", err
		}
	}
	steps := [][]string{
		{"-C", work, "add", "--all"},
		{"-C", work, "commit", "--quiet", "--allow-empty", "--message", "test commit"},
		{"-C", work, "push", "--quiet", bare, "HEAD:refs/heads/" + branch},
	}
	for _, args := range steps {
		if err := Git(ctx, args...); err != nil {
			return "", err
		}
	}
	return GitOutput(ctx, "-C", work, "rev-parse", "HEAD")
}

// GitOutput runs git like Git and returns its trimmed standard output.
func GitOutput(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}
