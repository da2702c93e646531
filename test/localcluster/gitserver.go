package localcluster

import (
	"context"
	"errors"
	"fmt"
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

// GitServer serves the bare repositories of a directory over smart HTTP with
// Debian's `git http-backend`, on loopback. It counts what clients ask for, so
// tests can see how often a repository was listed or fetched.
type GitServer struct {
	root     string
	server   *http.Server
	listener net.Listener

	mu     sync.Mutex
	counts map[string]*GitRequests
}

// GitRequests counts the requests for one repository.
type GitRequests struct {
	// RefListings are ref advertisements (GET info/refs?service=git-upload-pack).
	RefListings int
	// Fetches are pack negotiations (POST git-upload-pack).
	Fetches int
}

// StartGitServer serves root on addr (host:port; port 0 picks one).
func StartGitServer(root, addr string, logTo *os.File) (*GitServer, error) {
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
	s := &GitServer{root: root, listener: listener, counts: map[string]*GitRequests{}}
	backend := &cgi.Handler{
		Path: gitPath,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	var logger *log.Logger
	if logTo != nil {
		logger = log.New(logTo, "git ", log.LstdFlags|log.Lmicroseconds)
		backend.Logger = logger
	}
	s.server = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.count(r)
			if logger != nil {
				logger.Printf("%s %s", r.Method, r.URL.RequestURI())
			}
			backend.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		if err := s.server.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) && logger != nil {
			logger.Printf("git server stopped: %v", err)
		}
	}()
	return s, nil
}

func (s *GitServer) count(r *http.Request) {
	path := r.URL.Path
	var repo string
	var fetch bool
	switch {
	case strings.HasSuffix(path, "/info/refs") && r.URL.Query().Get("service") == "git-upload-pack":
		repo = strings.TrimSuffix(path, "/info/refs")
	case strings.HasSuffix(path, "/git-upload-pack") && r.Method == http.MethodPost:
		repo, fetch = strings.TrimSuffix(path, "/git-upload-pack"), true
	default:
		return
	}
	repo = strings.TrimPrefix(repo, "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts[repo]
	if c == nil {
		c = &GitRequests{}
		s.counts[repo] = c
	}
	if fetch {
		c.Fetches++
	} else {
		c.RefListings++
	}
}

// Requests returns the counts for a repository, e.g. "example.git".
func (s *GitServer) Requests(repo string) GitRequests {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.counts[repo]; c != nil {
		return *c
	}
	return GitRequests{}
}

// BaseURL is the URL repositories are served under: BaseURL/NAME.git.
func (s *GitServer) BaseURL() string { return "http://" + s.listener.Addr().String() }

// Close stops serving.
func (s *GitServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.server.Shutdown(ctx)
}

// CreateRepository makes the bare repository NAME.git holding the files of
// contentDir as one commit on branch, unless it exists already.
func (s *GitServer) CreateRepository(ctx context.Context, name, contentDir, branch string) error {
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
// so results do not depend on the machine.
func Git(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(childEnv(),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=alumiini", "GIT_AUTHOR_EMAIL=dev@alumiini.invalid",
		"GIT_COMMITTER_NAME=alumiini", "GIT_COMMITTER_EMAIL=dev@alumiini.invalid")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}
