package git

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// hostileSSHD is an SSH server on loopback that answers every command with
// upload-pack's ref advertisement of one branch (main at commit), reads the
// client's request, then sends response: what a hostile git server may send,
// which a real sshd running git cannot be made to. It returns the server's
// URL and an Auth that trusts it.
func hostileSSHD(t *testing.T, commit string, response []byte) (string, *Auth) {
	t.Helper()
	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(hostKey)
	if err != nil {
		t.Fatal(err)
	}
	config := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
	config.AddHostKey(signer)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	advertisement := pktLine(commit+" HEAD\x00shallow side-band-64k ofs-delta symref=HEAD:refs/heads/main agent=git/2\n") +
		pktLine(commit+" refs/heads/main\n") + "0000"
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go serveUploadPack(conn, config, advertisement, response)
		}
	}()
	url := "ssh://git@" + l.Addr().String() + "/r.git"
	return url, sshAuthTrusting(t, url, signer.PublicKey())
}

func serveUploadPack(conn net.Conn, config *ssh.ServerConfig, advertisement string, response []byte) {
	defer conn.Close()
	_, channels, requests, err := ssh.NewServerConn(conn, config)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(requests)
	for newChannel := range channels {
		if newChannel.ChannelType() != "session" {
			_ = newChannel.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		channel, channelRequests, err := newChannel.Accept()
		if err != nil {
			return
		}
		go func() {
			defer channel.Close()
			for req := range channelRequests {
				if req.Type != "exec" {
					_ = req.Reply(false, nil)
					continue
				}
				_ = req.Reply(true, nil)
				_, _ = io.WriteString(channel, advertisement)
				if readRequest(channel) {
					_, _ = channel.Write(response)
				}
				_, _ = channel.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
				return
			}
		}()
	}
}

// readRequest reads an upload-pack request up to its "done" line; false if
// the client sent none (it only listed).
func readRequest(r io.Reader) bool {
	br := bufio.NewReader(r)
	for {
		var size [4]byte
		if _, err := io.ReadFull(br, size[:]); err != nil {
			return false
		}
		var n int
		if _, err := fmt.Sscanf(string(size[:]), "%04x", &n); err != nil {
			return false
		}
		if n <= 4 {
			continue
		}
		line := make([]byte, n-4)
		if _, err := io.ReadFull(br, line); err != nil {
			return false
		}
		if strings.TrimSpace(string(line)) == "done" {
			return true
		}
	}
}
