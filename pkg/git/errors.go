package git

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
)

// Reasons classify failures a user can act on; they become condition reasons.
const (
	ReasonHostUnreachable      = "HostUnreachable"
	ReasonAuthenticationFailed = "AuthenticationFailed"
	ReasonTLSError             = "TLSError"
	ReasonHostKeyMismatch      = "HostKeyMismatch"
	ReasonRepositoryNotFound   = "RepositoryNotFound"
	ReasonRepositoryEmpty      = "RepositoryEmpty"
	ReasonRefNotFound          = "RefNotFound"
	ReasonPathNotFound         = "PathNotFound"
	ReasonUnsafeContent        = "UnsafeContent"
	ReasonLimitExceeded        = "LimitExceeded"
	ReasonInvalidCredentials   = "InvalidCredentials"
	ReasonTimeout              = "Timeout"
	ReasonFetchFailed          = "FetchFailed"
)

// Error is a failure with a reason and a message fit for a GitRepository's
// status: it names what went wrong and never carries a credential.
type Error struct {
	Reason  string
	Message string
	Err     error
}

func (e *Error) Error() string { return e.Message }
func (e *Error) Unwrap() error { return e.Err }

// Reason returns the reason of err, or ReasonFetchFailed for an
// unclassified error.
func Reason(err error) string {
	var gerr *Error
	if errors.As(err, &gerr) {
		return gerr.Reason
	}
	return ReasonFetchFailed
}

func newError(reason string, err error, format string, args ...any) *Error {
	return &Error{Reason: reason, Message: fmt.Sprintf(format, args...), Err: err}
}

// classify turns a transport error of doing (e.g. "listing refs of URL") into
// an Error whose message says what a user can do about it.
func classify(err error, doing string) error {
	if err == nil {
		return nil
	}
	var gerr *Error
	if errors.As(err, &gerr) {
		return err
	}
	var unknownAuthority x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var netErr net.Error
	msg := err.Error()
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return newError(ReasonTimeout, err, "%s: timed out (spec.timeout)", doing)
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed),
		strings.Contains(msg, "unable to authenticate"), strings.Contains(msg, "no supported methods remain"):
		return newError(ReasonAuthenticationFailed, err, "%s: authentication failed; check the credentials in spec.secretRef", doing)
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return newError(ReasonRepositoryNotFound, err, "%s: repository not found", doing)
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return newError(ReasonRepositoryEmpty, err, "%s: the repository is empty", doing)
	case errors.As(err, &unknownAuthority):
		return newError(ReasonTLSError, err, "%s: TLS: the server's certificate is signed by an unknown authority (set ca.crt in the secret)", doing)
	case errors.As(err, &hostname):
		return newError(ReasonTLSError, err, "%s: TLS: %v", doing, hostname)
	case errors.As(err, &invalid):
		return newError(ReasonTLSError, err, "%s: TLS: %v", doing, invalid)
	case strings.Contains(msg, "knownhosts: key mismatch"), strings.Contains(msg, "key is unknown"),
		strings.Contains(msg, "host key mismatch"):
		return newError(ReasonHostKeyMismatch, err, "%s: the SSH host key is not in known_hosts or does not match it; refusing to connect", doing)
	case strings.Contains(msg, "certificate"):
		return newError(ReasonTLSError, err, "%s: TLS: %s", doing, msg)
	case strings.Contains(msg, "connection refused"), strings.Contains(msg, "no such host"),
		strings.Contains(msg, "network is unreachable"), strings.Contains(msg, "no route to host"):
		return newError(ReasonHostUnreachable, err, "%s: host unreachable: %s", doing, msg)
	case errors.As(err, &netErr) && netErr.Timeout():
		return newError(ReasonTimeout, err, "%s: timed out: %s", doing, msg)
	}
	return newError(ReasonFetchFailed, err, "%s: %s", doing, msg)
}

// transient reports whether err may go away on its own: a dropped connection
// or an unreachable host, not bad credentials, a missing ref or a server
// that stalled (a retry would hold the fetch slot as long again).
func transient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errStalled) {
		return false
	}
	switch Reason(err) {
	case ReasonHostUnreachable, ReasonFetchFailed, ReasonTimeout:
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF)
}
