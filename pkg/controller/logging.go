package controller

import (
	"context"
	"errors"
	"runtime/debug"
	"time"

	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini/v1alpha1"
)

// Every line a sync logs carries the GitRepository (logKeyRepository, a
// klog.KRef) and, once it is known, the commit (logKeyCommit): both travel
// in the context's logger, so callees log with klog.FromContext and never
// repeat them.
const (
	logKeyRepository = "gitRepository"
	logKeyCommit     = "commit"
)

// withCommit adds commit to the context's logger.
func withCommit(ctx context.Context, commit string) context.Context {
	if commit == "" {
		return ctx
	}
	return klog.NewContext(ctx, klog.FromContext(ctx).WithValues(logKeyCommit, commit))
}

// commitOf is the commit a sync's outcome is about: the one it applied or
// got to before failing; for an idle sync, the one already synced.
func commitOf(repo *v1alpha1.GitRepository, out *outcome, err error, stage *stageError) string {
	switch {
	case stage != nil:
		return stage.commit
	case err != nil:
		return ""
	case out != nil:
		return out.commit
	}
	return repo.Status.LastSyncedCommit
}

// logOutcome logs one line per sync: failures, applied commits and drift
// comparisons at the default level, idle rounds only at -v=4.
func logOutcome(ctx context.Context, out *outcome, err error, reason string, start time.Time) {
	logger := klog.FromContext(ctx)
	took := time.Since(start).Round(time.Millisecond)
	switch {
	case err != nil:
		// As brief as an Event: a failing sync retries, and its error may
		// quote a whole commit's worth of object errors.
		logger.Error(errors.New(brief(err.Error())), "Sync failed", "reason", reason, "duration", took)
	case out == nil:
		logger.V(4).Info("Up to date", "duration", took)
	case out.upToDate:
		logger.V(2).Info("Up to date after a handed-over push", "duration", took)
	default:
		msg := "Synced"
		if out.driftOnly {
			msg = "Compared drifted objects with git"
		}
		res := out.result
		logger.Info(msg, "created", res.Created, "configured", res.Configured, "unchanged", res.Unchanged,
			"pruned", res.Pruned, "held", len(res.Held), "duration", took)
	}
}

// logPanic, deferred (`defer logPanic(...)`, so that its recover stops
// the panic) in a goroutine the supervisor does not run, turns a panic
// there into a log line with its stack; the goroutine's other deferred
// calls still run. The supervisor restarts a crashed worker, but a panic in
// any other goroutine ends the process, and with it the API server and etcd
// for every tenant.
func logPanic(logger klog.Logger, msg string) {
	if r := recover(); r != nil {
		logger.Error(nil, msg, "panic", r, "stack", string(debug.Stack()))
	}
}

// repoLogger is ctx's logger naming the GitRepository of key
// ("namespace/name"), for code that runs outside a sync's context.
func repoLogger(ctx context.Context, key string) klog.Logger {
	namespace, name, _ := cache.SplitMetaNamespaceKey(key)
	return klog.FromContext(ctx).WithValues(logKeyRepository, klog.KRef(namespace, name))
}
