package embeddedetcd

import (
	"os"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// quietShutdownCore drops the error lines etcd prints about its listeners
// closing once we have asked it to stop (they are what a normal shutdown looks
// like, and they read like a failure), and two start-up warnings that do not
// apply to a loopback-only etcd without etcd auth. Anything else passes.
type quietShutdownCore struct {
	zapcore.Core
	closing *atomic.Bool
}

func (c quietShutdownCore) With(fields []zapcore.Field) zapcore.Core {
	return quietShutdownCore{Core: c.Core.With(fields), closing: c.closing}
}

func (c quietShutdownCore) Check(entry zapcore.Entry, checked *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if isStartupNoise(entry.Message) || c.closing.Load() && isShutdownNoise(entry.Message) {
		return checked
	}
	if c.Core.Enabled(entry.Level) {
		return checked.AddCore(entry, c)
	}
	return checked
}

func isStartupNoise(message string) bool {
	return strings.HasPrefix(message, "Running http and grpc server on single port") ||
		strings.HasPrefix(message, "simple token is not cryptographically signed")
}

func isShutdownNoise(message string) bool {
	for _, noise := range []string{"setting up serving from embedded etcd failed", "stopping insecure grpc server", "stopped insecure grpc server"} {
		if strings.Contains(message, noise) {
			return true
		}
	}
	return false
}

// newLogger is etcd's JSON logger at warn level on stderr, quiet about its own
// shutdown once closing is set.
func newLogger(closing *atomic.Bool) *zap.Logger {
	encoder := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return newLoggerOn(zapcore.NewCore(encoder, zapcore.Lock(os.Stderr), zapcore.WarnLevel), closing)
}

func newLoggerOn(core zapcore.Core, closing *atomic.Bool) *zap.Logger {
	return zap.New(quietShutdownCore{Core: core, closing: closing}).Named("etcd")
}
