package localcluster

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// process is a child process with its output in a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logFile string
	done    chan struct{}
	err     error
}

// startProcess runs binary with our environment (childEnv) and env added.
func startProcess(name, logFile string, binary string, env []string, args ...string) (*process, error) {
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening %s log: %w", name, err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(ChildEnv(), env...)
	// If we are killed without a chance to clean up, the children follow.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, binary, err)
	}
	p := &process{name: name, cmd: cmd, logFile: logFile, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

// ChildEnv is our environment without what would change a child's behaviour
// behind its flags' back: etcd reads every ETCD_* variable as a flag; the
// tools read KUBECONFIG, and a standalone alumiini run in a pod would take
// KUBERNETES_SERVICE_* for the cluster it runs in; GOGC and GOMEMLIMIT
// would change alumiini's collector behind a bench's back (it sets
// Options.AlumiiniEnv).
func ChildEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "ETCD_") || strings.HasPrefix(name, "KUBERNETES_SERVICE_") ||
			name == "KUBECONFIG" || name == "GOGC" || name == "GOMEMLIMIT" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the process to terminate, and kills it if it has not after grace.
func (p *process) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	// A Go process writes every goroutine's stack to its log on SIGQUIT:
	// what kept it from stopping.
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// failure describes an exited process with the end of its log, where the
// reason usually is.
func (p *process) failure() error {
	data, _ := os.ReadFile(p.logFile)
	lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return fmt.Errorf("%s exited (%v); the end of %s:\n%s", p.name, p.err, p.logFile, bytes.Join(lines, []byte("\n")))
}
