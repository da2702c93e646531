package gitserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/falsesystems/alumiini/test/freeport"
)

// SSHD is Debian's OpenSSH server on a loopback port with its own config:
// key-only login for the current user, git served by the system's
// git-upload-pack.
type SSHD struct {
	Port int
	// User is the login name; repositories are ssh://User@127.0.0.1:Port/<abs path>.
	User string
	// KnownHosts is a known_hosts line for the server's host key.
	KnownHosts []byte
	// ClientKey is a private key the server accepts (OpenSSH PEM).
	ClientKey []byte
	// OtherKey is a valid private key the server does not accept.
	OtherKey []byte
	// OtherKnownHosts names the same address with a different host key.
	OtherKnownHosts []byte

	cmd *exec.Cmd
}

// ErrNoSSHD is returned when sshd is neither installed nor installable.
var ErrNoSSHD = errors.New("sshd is not installed and apt-get could not install openssh-server")

// StartSSHD runs sshd in dir until Close. It installs openssh-server with
// apt-get when sshd is missing.
func StartSSHD(ctx context.Context, dir string) (*SSHD, error) {
	sshdPath, err := findSSHD()
	if err != nil {
		return nil, err
	}
	me, err := user.Current()
	if err != nil {
		return nil, err
	}
	keygen := func(name string) ([]byte, []byte, error) {
		file := filepath.Join(dir, name)
		if out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", file).CombinedOutput(); err != nil {
			return nil, nil, fmt.Errorf("ssh-keygen: %w: %s", err, out)
		}
		private, err := os.ReadFile(file)
		if err != nil {
			return nil, nil, err
		}
		public, err := os.ReadFile(file + ".pub")
		return private, public, err
	}
	_, hostPub, err := keygen("host_key")
	if err != nil {
		return nil, err
	}
	_, otherHostPub, err := keygen("other_host_key")
	if err != nil {
		return nil, err
	}
	clientKey, clientPub, err := keygen("client_key")
	if err != nil {
		return nil, err
	}
	otherKey, _, err := keygen("other_key")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), clientPub, 0o600); err != nil {
		return nil, err
	}
	port, err := freeport.Loopback()
	if err != nil {
		return nil, err
	}
	config := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
AllowUsers %s
`, port, filepath.Join(dir, "host_key"), filepath.Join(dir, "sshd.pid"), filepath.Join(dir, "authorized_keys"), me.Username)
	configFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		return nil, err
	}
	// sshd insists on its privilege-separation directory.
	_ = os.MkdirAll("/run/sshd", 0o755)
	log, err := os.Create(filepath.Join(dir, "sshd.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", configFile)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting sshd: %w", err)
	}
	s := &SSHD{Port: port, User: me.Username, ClientKey: clientKey, OtherKey: otherKey, cmd: cmd,
		KnownHosts:      []byte(fmt.Sprintf("[127.0.0.1]:%d %s", port, hostPub)),
		OtherKnownHosts: []byte(fmt.Sprintf("[127.0.0.1]:%d %s", port, otherHostPub))}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			conn.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Close()
			data, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
			return nil, fmt.Errorf("sshd did not listen on port %d: %s", port, strings.TrimSpace(string(data)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL is the ssh:// URL of a repository directory on this machine.
func (s *SSHD) URL(repoDir string) string {
	return fmt.Sprintf("ssh://%s@127.0.0.1:%d%s", s.User, s.Port, repoDir)
}

// Close stops sshd.
func (s *SSHD) Close() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

func findSSHD() (string, error) {
	for _, p := range []string{"/usr/sbin/sshd", "/usr/bin/sshd"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	cmd := exec.Command("bash", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%w: %s", ErrNoSSHD, strings.TrimSpace(string(out)))
	}
	return "/usr/sbin/sshd", nil
}
