package controller

import (
	"strings"

	"github.com/falsesystems/alumiini/pkg/apply"
	"github.com/falsesystems/alumiini/pkg/git"
)

// fixes says, for each reason a sync can fail or stop with, in one line
// what to do; withFix appends it to the status message and the Event, so
// nobody has to look the reason up. The README's Troubleshooting says the
// same at more length.
var fixes = map[string]string{
	git.ReasonAuthenticationFailed: "check the credentials in the Secret named by spec.secretRef",
	git.ReasonInvalidCredentials:   "check the keys of the Secret named by spec.secretRef (username/password, bearerToken, identity, known_hosts)",
	ReasonSecretNotFound:           "create the Secret named by spec.secretRef in this namespace, or fix the name",
	git.ReasonHostKeyMismatch:      "check known_hosts in the Secret named by spec.secretRef against the server's key",
	git.ReasonTLSError:             "check ca.crt in the Secret named by spec.secretRef, or the server's certificate",
	git.ReasonHostUnreachable:      "check spec.url's host and the network from alumiini to it",
	git.ReasonTimeout:              "the server is slow or stalled; raise spec.timeout if it is only slow",
	git.ReasonFetchFailed:          "check spec.url and the server; the message says what it answered",
	git.ReasonRepositoryNotFound:   "check spec.url, and that the credentials may read the repository",
	git.ReasonRepositoryEmpty:      "push a first commit to the repository",
	git.ReasonRefNotFound:          "check spec.branch, spec.tag or spec.commit against the repository",
	git.ReasonPathNotFound:         "check spec.path against the commit named in the message",
	git.ReasonLimitExceeded:        "make the repository's path smaller, or ask your platform team to raise the --max-* bound named",
	ReasonRenderFailed:             "fix the manifest or kustomization named in the message, and push",
	git.ReasonUnsafeContent:        "remove what the message names (a remote base, a path out of the repository) from the repository",
	ReasonEmptyRender:              "restore the path's manifests, or commit an empty .alumiini-allow-empty there if it is meant to be empty",
	apply.ReasonDryRunFailed:       "fix the object named in the message so the API accepts it, and push",
	apply.ReasonUnknownKind:        "install the CRD of the kind named (or commit it with its resources), or fix apiVersion/kind",
	apply.ReasonCRDNotReady:        "see the CRD's conditions (kubectl get crd NAME -o yaml); NamesAccepted False means its names clash with another CRD's",
	apply.ReasonImmutable:          "ask for a sync with force: true to recreate the object, or revert the field",
	apply.ReasonOwnedByAnother:     "another GitRepository manages the object named: remove it from one of them",
	apply.ReasonAdoptionRequired:   "set spec.adopt: true to take the existing object over, or rename it",
	apply.ReasonApplyFailed:        "the API refused the write (RBAC, a quota, an admission webhook: the message says which); fix that and push or ask for a sync",
	apply.ReasonPruneFailed:        "give the identity applying the right to delete what the message names; it is tried at every sync",
	apply.ReasonBreakGlassInGit:    "remove the alumiini.false.systems/suspend-heal annotation from the manifest",
	ReasonWorkerCrashed:            "report it as an alumiini issue with the panic's stack from alumiini's log (-v=4); the worker restarts after the restart period",
	ReasonDependencyCycle:          "remove one of the spec.dependsOn entries of the cycle named",
	ReasonDependencyNotReady:       "see the dependency named; this GitRepository syncs as soon as it is Ready",
	ReasonHealthTimeout:            "look at the objects named (kubectl describe); \"cannot watch\" means the identity applying may not list and watch that kind, or was refused (429: too many watches, or the API server throttling); else raise spec.healthTimeout",
	ReasonRolloutFailed:            "see the Rollout's own status; the next commit is followed anew",
	ReasonRolledBack:               "see why the Rollout rolled back (its decisions); push a fixed commit",
	ReasonRolloutPaused:            "promote or resume the Rollout, or raise spec.healthTimeout",
	ReasonRolloutTimeout:           "see the Rollout's progress, or raise spec.healthTimeout",
	ReasonRolloutNotFound:          "create the Rollout named by spec.rolloutRef in the target namespace, install its CRD, or let the identity watch it",
}

// withFix is message followed by what to do about reason, if known, in at
// most max bytes: the message is cut, never the fix.
func withFix(reason, message string, max int) string {
	message = strings.TrimSpace(message)
	fix, ok := fixes[reason]
	if !ok {
		return shorten(message, max, "… (truncated)")
	}
	tail := ". To fix: " + fix
	return shorten(message, max-len(tail), "… (truncated)") + tail
}
