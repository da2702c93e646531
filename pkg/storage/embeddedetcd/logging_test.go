package embeddedetcd

import (
	"sync/atomic"
	"testing"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestShutdownNoiseIsDroppedOnlyWhileClosing(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	closing := &atomic.Bool{}
	logger := newLoggerOn(core, closing)

	logger.Warn("simple token is not cryptographically signed")
	logger.Error("setting up serving from embedded etcd failed.")
	logger.Error("disk full")
	closing.Store(true)
	logger.Error("setting up serving from embedded etcd failed.")
	logger.Error("disk full again")

	var got []string
	for _, entry := range logs.All() {
		got = append(got, entry.Message)
	}
	want := []string{"setting up serving from embedded etcd failed.", "disk full", "disk full again"}
	if len(got) != len(want) {
		t.Fatalf("logged %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("logged %q, want %q", got, want)
		}
	}
}
