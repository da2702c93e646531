package webhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// startServer runs s until the test ends and returns its address.
func startServer(t *testing.T, s *Server) string {
	t.Helper()
	if err := s.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after its context ended")
		}
	})
	return s.Addr()
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.TLS != nil {
		w.Header().Set("X-Test-TLS", "yes")
	}
	w.WriteHeader(http.StatusNoContent)
})

func TestServerServesPlainHTTP(t *testing.T) {
	s := NewServer("127.0.0.1:0", "", "", okHandler)
	if s.Addr() != "" {
		t.Errorf("Addr before Listen = %q, want empty", s.Addr())
	}
	addr := startServer(t, s)
	resp, err := http.Get("http://" + addr + "/hooks/github")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("status %d, want 204", resp.StatusCode)
	}
}

func TestServerServesTLS(t *testing.T) {
	certFile, keyFile, pool := selfSignedCert(t)
	addr := startServer(t, NewServer("127.0.0.1:0", certFile, keyFile, okHandler))

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	resp, err := client.Get("https://" + addr + "/hooks/github")
	if err != nil {
		t.Fatalf("GET over TLS: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("X-Test-TLS") != "yes" {
		t.Errorf("status %d, TLS seen by handler %q; want 204 over TLS", resp.StatusCode, resp.Header.Get("X-Test-TLS"))
	}
	if resp, err := http.Get("http://" + addr + "/hooks/github"); err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP on the TLS port: status %d, want 400", resp.StatusCode)
		}
	}
}

func TestServerNeedsBothCertAndKey(t *testing.T) {
	certFile, _, _ := selfSignedCert(t)
	if err := NewServer("127.0.0.1:0", certFile, "", okHandler).Listen(); err == nil {
		t.Errorf("Listen with a certificate and no key succeeded")
	}
}

func TestServerAnswers500WhenAHandlerPanics(t *testing.T) {
	addr := startServer(t, NewServer("127.0.0.1:0", "", "", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		panic("boom")
	})))
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || string(body) != "{\"error\":\"internal error\"}\n" {
		t.Errorf("status %d body %q, want 500 and a bare error", resp.StatusCode, body)
	}
}

func TestServerCutsOffSlowLoris(t *testing.T) {
	s := NewServer("127.0.0.1:0", "", "", okHandler)
	s.srv.ReadHeaderTimeout = time.Second
	addr := startServer(t, s)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dialing: %v", err)
	}
	defer func() { _ = conn.Close() }()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// One byte a second: the headers never end.
		request := "POST /hooks/github HTTP/1.1\r\nHost: example\r\nX-Slow: " + string(make([]byte, 64))
		for i := 0; i < len(request); i++ {
			if _, err := conn.Write([]byte{request[i]}); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
		}
	}()

	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(5 * time.Second))
	_, err = io.ReadAll(conn)
	elapsed := time.Since(start)
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		t.Fatalf("the server still held the connection after %v", elapsed)
	}
	if elapsed > 3*time.Second {
		t.Errorf("cut off after %v, want about 1s", elapsed)
	}
}

// selfSignedCert writes a certificate for 127.0.0.1 and its key to files and
// returns them with a pool trusting the certificate.
func selfSignedCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "alumiini-webhook-test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
