package validation

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/falsesystems/alumiini/pkg/apis/alumiini"
)

// Bounds of the durations in a GitRepositorySpec.
const (
	MinInterval = 10 * time.Second
	MaxInterval = 24 * time.Hour
	MinTimeout  = time.Second
	MaxTimeout  = time.Hour
	// MaxSyncWaitSeconds stays below k8s.io/apiserver's 34 s cap on a create
	// handler, so a waiting sync answers with its own timeout, not a 504.
	MaxSyncWaitSeconds = 30

	maxURLLength  = 2048
	maxPathLength = 1024
	maxRefLength  = 255
)

var commitPattern = regexp.MustCompile(`^[0-9a-f]{40}$`)

// ValidateGitRepository checks a GitRepository being created.
func ValidateGitRepository(repo *alumiini.GitRepository) field.ErrorList {
	// The name goes into a label on every applied object, so it must fit a label value.
	allErrs := apimachineryvalidation.ValidateObjectMeta(&repo.ObjectMeta, true,
		apimachineryvalidation.NameIsDNSLabel, field.NewPath("metadata"))
	allErrs = append(allErrs, validateMetadataSize(&repo.ObjectMeta, nil, field.NewPath("metadata"))...)
	allErrs = append(allErrs, ValidateGitRepositorySpec(&repo.Spec, field.NewPath("spec"))...)
	allErrs = append(allErrs, validateDependsOn(repo, field.NewPath("spec", "dependsOn"))...)
	return allErrs
}

// MaxMetadataBytes bounds a GitRepository's metadata as stored (JSON, with
// its escaping: "<" takes 6 bytes): labels, annotations, finalizers,
// managedFields and the rest together. The status alumiini writes, its
// inventory up to 1 MiB, must still fit etcd's 1.5 MiB request limit:
// whoever may update a GitRepository could otherwise make every later
// status write fail (attacker reviews added megabytes of labels, of
// finalizers, of managedFields by applying under new manager names, and of
// escaped annotations), so that what a sync applies goes unrecorded.
const MaxMetadataBytes = 256 << 10

// validateMetadataSize refuses metadata over MaxMetadataBytes that grew (old
// is nil on create): an object stored larger before the bound still takes
// writes that do not grow it, such as the controller removing its finalizer.
func validateMetadataSize(meta, old *metav1.ObjectMeta, fldPath *field.Path) field.ErrorList {
	size := encodedSize(meta)
	if size <= MaxMetadataBytes || old != nil && size <= encodedSize(old) {
		return nil
	}
	return field.ErrorList{field.Invalid(fldPath, fmt.Sprintf("%d bytes as stored", size), fmt.Sprintf(
		"may take at most %d bytes, so that the status alumiini writes still fits etcd's request limit; "+
			"managedFields grow with each field manager that applies (apply with managedFields: [{}] to reset them)",
		MaxMetadataBytes))}
}

func encodedSize(meta *metav1.ObjectMeta) int {
	data, err := json.Marshal(meta)
	if err != nil {
		return 0 // ObjectMeta always encodes
	}
	return len(data)
}

// MaxDependencies bounds spec.dependsOn.
const MaxDependencies = 32

// validateDependsOn checks each dependency's name, and refuses one naming
// the GitRepository itself (the cycle visible here; longer ones are reported
// in status).
func validateDependsOn(repo *alumiini.GitRepository, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	deps := repo.Spec.DependsOn
	if len(deps) > MaxDependencies {
		return append(allErrs, field.TooMany(fldPath, len(deps), MaxDependencies))
	}
	for i, d := range deps {
		p := fldPath.Index(i)
		allErrs = append(allErrs, validateObjectName(d.Name, p.Child("name"))...)
		namespace := d.Namespace
		if namespace != "" {
			for _, msg := range validation.IsDNS1123Label(namespace) {
				allErrs = append(allErrs, field.Invalid(p.Child("namespace"), namespace, msg))
			}
		} else {
			namespace = repo.Namespace
		}
		if d.Name == repo.Name && namespace == repo.Namespace && repo.Name != "" {
			allErrs = append(allErrs, field.Invalid(p, d.Name, "a GitRepository cannot depend on itself"))
		}
	}
	return allErrs
}

// ValidateGitRepositoryUpdate checks an update of a GitRepository's metadata and spec.
func ValidateGitRepositoryUpdate(repo, old *alumiini.GitRepository) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&repo.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, validateMetadataSize(&repo.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))...)
	allErrs = append(allErrs, ValidateGitRepositorySpec(&repo.Spec, field.NewPath("spec"))...)
	allErrs = append(allErrs, validateDependsOn(repo, field.NewPath("spec", "dependsOn"))...)
	return allErrs
}

// ValidateGitRepositorySpec checks every field of a spec.
func ValidateGitRepositorySpec(spec *alumiini.GitRepositorySpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	allErrs = append(allErrs, validateURL(spec.URL, fldPath.Child("url"))...)
	allErrs = append(allErrs, validateRefs(spec, fldPath)...)
	allErrs = append(allErrs, ValidateRepositoryPath(spec.Path, fldPath.Child("path"))...)
	allErrs = append(allErrs, validateDuration(spec.Interval, MinInterval, MaxInterval, fldPath.Child("interval"))...)
	allErrs = append(allErrs, validateDuration(spec.Timeout, MinTimeout, MaxTimeout, fldPath.Child("timeout"))...)
	if spec.TargetNamespace != "" {
		for _, msg := range validation.IsDNS1123Label(spec.TargetNamespace) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("targetNamespace"), spec.TargetNamespace, msg))
		}
	}
	if spec.SecretRef != nil {
		allErrs = append(allErrs, validateObjectName(spec.SecretRef.Name, fldPath.Child("secretRef", "name"))...)
		if strings.HasPrefix(strings.ToLower(spec.URL), "http://") {
			allErrs = append(allErrs, field.Forbidden(fldPath.Child("secretRef"),
				"credentials are never sent over plain http://, where anyone on the path can read them; use an https:// URL"))
		}
	}
	if spec.ServiceAccountName != "" {
		allErrs = append(allErrs, validateObjectName(spec.ServiceAccountName, fldPath.Child("serviceAccountName"))...)
	}
	if spec.Prune == nil {
		allErrs = append(allErrs, field.Required(fldPath.Child("prune"), ""))
	}
	if spec.RolloutRef != nil {
		allErrs = append(allErrs, validateRolloutRef(spec.RolloutRef, fldPath.Child("rolloutRef"))...)
	}
	if spec.Webhook != nil {
		allErrs = append(allErrs, validateObjectName(spec.Webhook.SecretRef.Name, fldPath.Child("webhook", "secretRef", "name"))...)
	}
	if spec.Drift != nil {
		allErrs = append(allErrs, validateDrift(spec.Drift, fldPath.Child("drift"))...)
	}
	if spec.HealthTimeout != "" {
		allErrs = append(allErrs, validateDuration(spec.HealthTimeout, MinTimeout, MaxTimeout, fldPath.Child("healthTimeout"))...)
	}
	allErrs = append(allErrs, validateHealthChecks(spec.HealthChecks, fldPath.Child("healthChecks"))...)
	return allErrs
}

// MaxHealthChecks bounds spec.healthChecks: each is a watch while a sync waits.
const MaxHealthChecks = 32

func validateHealthChecks(checks []alumiini.HealthCheckReference, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if len(checks) > MaxHealthChecks {
		return append(allErrs, field.TooMany(fldPath, len(checks), MaxHealthChecks))
	}
	for i, c := range checks {
		p := fldPath.Index(i)
		if c.APIVersion == "" {
			allErrs = append(allErrs, field.Required(p.Child("apiVersion"), "e.g. apps/v1"))
		} else if _, err := schema.ParseGroupVersion(c.APIVersion); err != nil {
			allErrs = append(allErrs, field.Invalid(p.Child("apiVersion"), c.APIVersion, "must be group/version or version"))
		}
		if c.Kind == "" {
			allErrs = append(allErrs, field.Required(p.Child("kind"), "e.g. Deployment"))
		} else if !kindPattern.MatchString(c.Kind) {
			allErrs = append(allErrs, field.Invalid(p.Child("kind"), c.Kind, "must be a kind name such as Deployment"))
		}
		allErrs = append(allErrs, validateObjectName(c.Name, p.Child("name"))...)
		if c.Namespace != "" {
			for _, msg := range validation.IsDNS1123Label(c.Namespace) {
				allErrs = append(allErrs, field.Invalid(p.Child("namespace"), c.Namespace, msg))
			}
		}
	}
	return allErrs
}

// Bounds of spec.drift: the ignore rules are matched against every applied
// object on every sync.
const (
	MaxHealGracePeriod    = 24 * time.Hour
	MaxDriftIgnoreRules   = 32
	MaxDriftIgnorePaths   = 16
	maxJSONPointerLength  = 256
	maxJSONPointerSegment = 16
)

var driftModes = []alumiini.DriftMode{alumiini.DriftCorrect, alumiini.DriftDetect, alumiini.DriftIgnore}

func validateDrift(drift *alumiini.DriftSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if drift.Mode != "" && !slices.Contains(driftModes, drift.Mode) {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("mode"), drift.Mode, driftModes))
	}
	if drift.HealGracePeriod != "" {
		allErrs = append(allErrs, validateDuration(drift.HealGracePeriod, 0, MaxHealGracePeriod, fldPath.Child("healGracePeriod"))...)
	}
	if len(drift.Ignore) > MaxDriftIgnoreRules {
		allErrs = append(allErrs, field.TooMany(fldPath.Child("ignore"), len(drift.Ignore), MaxDriftIgnoreRules))
	}
	for i, rule := range drift.Ignore {
		allErrs = append(allErrs, validateIgnoreRule(rule, fldPath.Child("ignore").Index(i))...)
	}
	return allErrs
}

func validateIgnoreRule(rule alumiini.DriftIgnoreRule, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if rule.Kind == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("kind"), "e.g. Deployment"))
	} else if !kindPattern.MatchString(rule.Kind) {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("kind"), rule.Kind, "must be a kind name such as Deployment"))
	}
	if rule.Group != "" {
		for _, msg := range validation.IsDNS1123Subdomain(rule.Group) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("group"), rule.Group, msg))
		}
	}
	if rule.Name != "" {
		allErrs = append(allErrs, validateObjectName(rule.Name, fldPath.Child("name"))...)
	}
	switch n := len(rule.Paths); {
	case n == 0:
		allErrs = append(allErrs, field.Required(fldPath.Child("paths"), "JSON pointers such as /spec/replicas"))
	case n > MaxDriftIgnorePaths:
		allErrs = append(allErrs, field.TooMany(fldPath.Child("paths"), n, MaxDriftIgnorePaths))
	}
	for i, p := range rule.Paths {
		if msg := checkIgnorePath(p); msg != "" {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("paths").Index(i), p, msg))
		}
	}
	return allErrs
}

// checkIgnorePath accepts a JSON pointer into an object's spec, data or
// other content, or to one of its labels or annotations; never to the
// object's identity, the metadata the API server keeps, its status (never
// applied, so never drift) or alumiini's own labels and annotations.
func checkIgnorePath(p string) string {
	switch {
	case !strings.HasPrefix(p, "/") || len(p) < 2:
		return "must be a JSON pointer such as /spec/replicas"
	case len(p) > maxJSONPointerLength:
		return fmt.Sprintf("must be at most %d characters", maxJSONPointerLength)
	case strings.Count(p, "/") > maxJSONPointerSegment:
		return fmt.Sprintf("must have at most %d segments", maxJSONPointerSegment)
	case strings.Contains(p, "~") && !validEscapes(p):
		return "'~' must be escaped as ~0, and '/' inside a key as ~1"
	case p == "/status" || strings.HasPrefix(p, "/status/"):
		return "status is never applied, so it never drifts"
	case strings.HasPrefix(p, "/metadata/labels/") || strings.HasPrefix(p, "/metadata/annotations/"):
		if key := strings.TrimPrefix(strings.TrimPrefix(p, "/metadata/labels/"), "/metadata/annotations/"); key == "" || strings.Contains(key, "/") {
			return "must name one label or annotation, e.g. /metadata/annotations/example.com~1owner"
		} else if strings.HasPrefix(key, "alumiini.false.systems~1") {
			return "names a label or annotation alumiini needs to manage the object"
		}
		return ""
	case p == "/apiVersion" || p == "/kind" || p == "/metadata" || strings.HasPrefix(p, "/metadata/"):
		return "names the object's identity or metadata the API server keeps; only spec-like fields, labels and annotations may be ignored"
	}
	return ""
}

func validEscapes(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] == '~' && (i+1 >= len(p) || (p[i+1] != '0' && p[i+1] != '1')) {
			return false
		}
	}
	return true
}

// validateURL accepts https, http, ssh and scp-like user@host:path URLs. A URL
// holding a credential is refused, and the error shows it redacted, because a
// 422 ends up in terminals, CI logs and audit logs.
func validateURL(raw string, fldPath *field.Path) field.ErrorList {
	if raw == "" {
		return field.ErrorList{field.Required(fldPath, "the git repository URL, e.g. https://git.example.com/org/repo.git")}
	}
	if len(raw) > maxURLLength {
		return field.ErrorList{field.TooLong(fldPath, "" /*unused*/, maxURLLength)}
	}
	if strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return field.ErrorList{field.Invalid(fldPath, RedactURL(raw), "must not contain spaces or control characters")}
	}
	if isSCPLike(raw) {
		at := strings.LastIndex(raw, "@")
		user, rest := raw[:at], raw[at+1:]
		host, repoPath, _ := strings.Cut(rest, ":")
		switch {
		case strings.Contains(user, ":"):
			return field.ErrorList{field.Invalid(fldPath, RedactURL(raw), "must not embed a password; put credentials in the Secret named by spec.secretRef")}
		case host == "" || repoPath == "":
			return field.ErrorList{field.Invalid(fldPath, RedactURL(raw), "scp-like URLs take the form user@host:path")}
		case strings.ContainsAny(user, "/@"):
			// git splits at the first "@", and reads a "/" before the
			// first ":" as a local path.
			return field.ErrorList{field.Invalid(fldPath, RedactURL(raw), `scp-like URL: the user must not contain "/" or "@" (git would read another host, or a local path)`)}
		case strings.HasPrefix(repoPath, `\`):
			return field.ErrorList{field.Invalid(fldPath, RedactURL(raw), `scp-like URL: the path must not start with "\" (git would read a local path)`)}
		}
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return field.ErrorList{field.Invalid(fldPath, RedactURL(raw), "is not a valid URL")}
	}
	switch u.Scheme {
	case "https", "http":
		if u.User != nil {
			return field.ErrorList{field.Invalid(fldPath, RedactURL(raw), "must not embed credentials; put them in the Secret named by spec.secretRef")}
		}
	case "ssh":
		if _, hasPassword := u.User.Password(); hasPassword {
			return field.ErrorList{field.Invalid(fldPath, RedactURL(raw), "must not embed a password; put the SSH key in the Secret named by spec.secretRef")}
		}
	case "":
		return field.ErrorList{field.Invalid(fldPath, RedactURL(raw), "must be an https://, http://, ssh:// or scp-like user@host:path URL")}
	default:
		return field.ErrorList{field.NotSupported(fldPath, u.Scheme+"://", []string{"https://", "http://", "ssh://", "user@host:path"})}
	}
	if u.Host == "" || u.Hostname() == "" {
		return field.ErrorList{field.Invalid(fldPath, RedactURL(raw), "must name a host")}
	}
	if u.Path == "" || u.Path == "/" {
		return field.ErrorList{field.Invalid(fldPath, RedactURL(raw), "must name a repository path on the host")}
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return field.ErrorList{field.Invalid(fldPath, RedactURL(raw), "must not have a query or fragment")}
	}
	return nil
}

// isSCPLike reports whether raw is git's scp-like syntax, user@host:path, which
// has no scheme and no slash before the colon.
func isSCPLike(raw string) bool {
	if strings.Contains(raw, "://") {
		return false
	}
	at := strings.LastIndex(raw, "@")
	if at <= 0 {
		return false
	}
	hostAndPath := raw[at+1:]
	colon := strings.Index(hostAndPath, ":")
	slash := strings.Index(hostAndPath, "/")
	return colon >= 0 && (slash < 0 || slash > colon)
}

// RedactURL returns raw with any credential in its user info replaced, safe
// to print in a status, an event, a log line or an error.
func RedactURL(raw string) string {
	if isSCPLike(raw) {
		at := strings.LastIndex(raw, "@")
		if strings.Contains(raw[:at], ":") {
			return "redacted@" + raw[at+1:]
		}
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		// Unparseable: hide everything between the scheme and the last '@'.
		if at := strings.LastIndex(raw, "@"); at >= 0 {
			scheme, _, found := strings.Cut(raw, "://")
			if found {
				return scheme + "://redacted@" + raw[at+1:]
			}
			return "redacted@" + raw[at+1:]
		}
		return raw
	}
	if u.Scheme == "" {
		// No scheme (token@host/path, //user:token@host/path): whatever
		// stands before an '@' may be a token.
		if at := strings.LastIndex(raw, "@"); at >= 0 {
			return "redacted@" + raw[at+1:]
		}
		return raw
	}
	if u.User != nil {
		// An SSH login name (ssh://git@host) is no secret; anything else in
		// user info may be a token or a password.
		if _, hasPassword := u.User.Password(); hasPassword || u.Scheme != "ssh" {
			u.User = url.User("redacted")
		}
	}
	return u.String()
}

// validateRefs checks branch, tag and commit: at most one of them, each in its
// own syntax.
func validateRefs(spec *alumiini.GitRepositorySpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	var set []string
	if spec.Branch != "" {
		set = append(set, "branch")
		allErrs = append(allErrs, ValidateRefName(spec.Branch, fldPath.Child("branch"))...)
	}
	if spec.Tag != "" {
		set = append(set, "tag")
		allErrs = append(allErrs, ValidateRefName(spec.Tag, fldPath.Child("tag"))...)
	}
	if spec.Commit != "" {
		set = append(set, "commit")
		if !commitPattern.MatchString(spec.Commit) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("commit"), spec.Commit, "must be 40 lower-case hexadecimal characters"))
		}
	}
	switch len(set) {
	case 0:
		allErrs = append(allErrs, field.Required(fldPath.Child("branch"), "one of branch, tag or commit is required"))
	case 1:
	default:
		allErrs = append(allErrs, field.Invalid(fldPath.Child(set[1]), refValue(spec, set[1]),
			fmt.Sprintf("at most one of branch, tag and commit may be set, found %s", strings.Join(set, " and "))))
	}
	return allErrs
}

func refValue(spec *alumiini.GitRepositorySpec, name string) string {
	switch name {
	case "branch":
		return spec.Branch
	case "tag":
		return spec.Tag
	}
	return spec.Commit
}

// ValidateRefName checks a branch or tag name by git's own rules
// (git-check-ref-format), given as the short name.
func ValidateRefName(name string, fldPath *field.Path) field.ErrorList {
	bad := func(msg string) field.ErrorList { return field.ErrorList{field.Invalid(fldPath, name, msg)} }
	switch {
	case len(name) > maxRefLength:
		return field.ErrorList{field.TooLong(fldPath, "", maxRefLength)}
	case strings.HasPrefix(name, "refs/"):
		return bad("give the short name without refs/heads/ or refs/tags/")
	case strings.HasPrefix(name, "-"):
		return bad("must not start with '-'")
	case name == "@":
		return bad("must not be '@'")
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f || strings.ContainsRune(" ~^:?*[\\", r) }):
		return bad("must not contain spaces, control characters or any of ~ ^ : ? * [ \\")
	case strings.Contains(name, ".."):
		return bad("must not contain '..'")
	case strings.Contains(name, "@{"):
		return bad("must not contain '@{'")
	case strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") || strings.Contains(name, "//"):
		return bad("must not start or end with '/' or contain '//'")
	case strings.HasSuffix(name, "."):
		return bad("must not end with '.'")
	}
	for _, component := range strings.Split(name, "/") {
		if strings.HasPrefix(component, ".") || strings.HasSuffix(component, ".lock") {
			return bad("no part between slashes may start with '.' or end with '.lock'")
		}
	}
	return nil
}

// ValidateRepositoryPath checks that a path stays inside the repository: relative,
// no '..' segment, no NUL and no backslash (which some tools read as a separator).
func ValidateRepositoryPath(p string, fldPath *field.Path) field.ErrorList {
	bad := func(msg string) field.ErrorList { return field.ErrorList{field.Invalid(fldPath, p, msg)} }
	switch {
	case p == "":
		return nil
	case len(p) > maxPathLength:
		return field.ErrorList{field.TooLong(fldPath, "", maxPathLength)}
	case strings.ContainsRune(p, 0):
		return bad("must not contain a NUL character")
	case strings.ContainsRune(p, '\\'):
		return bad("must use '/' as separator, not '\\'")
	case strings.HasPrefix(p, "/"):
		return bad("must be relative to the repository root")
	}
	for _, segment := range strings.Split(p, "/") {
		if segment == ".." {
			return bad("must not contain a '..' segment")
		}
	}
	return nil
}

func validateDuration(value string, min, max time.Duration, fldPath *field.Path) field.ErrorList {
	if value == "" {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	d, err := time.ParseDuration(value)
	if err != nil {
		return field.ErrorList{field.Invalid(fldPath, value, "must be a duration such as 30s, 5m or 1h30m")}
	}
	if d < min || d > max {
		return field.ErrorList{field.Invalid(fldPath, value, fmt.Sprintf("must be between %s and %s", shortDuration(min), shortDuration(max)))}
	}
	return nil
}

// shortDuration prints 24h and 10s rather than Go's 24h0m0s.
func shortDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

func validateObjectName(name string, fldPath *field.Path) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	var allErrs field.ErrorList
	for _, msg := range validation.IsDNS1123Subdomain(name) {
		allErrs = append(allErrs, field.Invalid(fldPath, name, msg))
	}
	return allErrs
}

// RolloutAPIVersions are the Rollouts alumiini can follow.
var RolloutAPIVersions = []string{"kulta.io/v1alpha1", "kulta.io/v1beta1", "argoproj.io/v1alpha1"}

func validateRolloutRef(ref *alumiini.RolloutReference, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if !slices.Contains(RolloutAPIVersions, ref.APIVersion) {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("apiVersion"), ref.APIVersion, RolloutAPIVersions))
	}
	if ref.Kind != "Rollout" {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("kind"), ref.Kind, []string{"Rollout"}))
	}
	allErrs = append(allErrs, validateObjectName(ref.Name, fldPath.Child("name"))...)
	return allErrs
}

var kindPattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{0,62}$`)

// ValidateGitRepositoryStatusUpdate checks a write through the status subresource.
// The pending sync request may be kept or cleared there, never introduced or
// swapped: only the sync subresource accepts requests.
func ValidateGitRepositoryStatusUpdate(repo, old *alumiini.GitRepository) field.ErrorList {
	fldPath := field.NewPath("status")
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&repo.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	status := &repo.Status
	allErrs = append(allErrs, metav1validation.ValidateConditions(status.Conditions, fldPath.Child("conditions"))...)
	if status.Phase != "" && !validPhases[status.Phase] {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("phase"), status.Phase, phaseNames()))
	}
	for name, commit := range map[string]string{"lastSyncedCommit": status.LastSyncedCommit, "lastAttemptedCommit": status.LastAttemptedCommit} {
		if commit != "" && !commitPattern.MatchString(commit) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child(name), commit, "must be 40 lower-case hexadecimal characters"))
		}
	}
	if status.ObservedGeneration < 0 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("observedGeneration"), status.ObservedGeneration, "must not be negative"))
	}
	if pending := status.PendingSyncRequest; pending != nil {
		if old.Status.PendingSyncRequest == nil || old.Status.PendingSyncRequest.ID != pending.ID {
			allErrs = append(allErrs, field.Forbidden(fldPath.Child("pendingSyncRequest"), "may only be set by the sync subresource"))
		}
	}
	if last := status.LastSyncRequest; last != nil && last.Result != nil && last.Result.Phase != alumiini.PhaseSynced && last.Result.Phase != alumiini.PhaseFailed {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("lastSyncRequest", "result", "phase"), last.Result.Phase,
			[]alumiini.GitRepositoryPhase{alumiini.PhaseSynced, alumiini.PhaseFailed}))
	}
	return allErrs
}

var validPhases = map[alumiini.GitRepositoryPhase]bool{
	alumiini.PhasePending: true, alumiini.PhaseSyncing: true, alumiini.PhaseSynced: true,
	alumiini.PhaseFailed: true, alumiini.PhaseSuspended: true,
}

func phaseNames() []alumiini.GitRepositoryPhase {
	return []alumiini.GitRepositoryPhase{alumiini.PhasePending, alumiini.PhaseSyncing,
		alumiini.PhaseSynced, alumiini.PhaseFailed, alumiini.PhaseSuspended}
}

// ValidateSyncRequest checks the body of a POST to the sync subresource.
func ValidateSyncRequest(req *alumiini.GitRepositorySyncRequest) field.ErrorList {
	var allErrs field.ErrorList
	fldPath := field.NewPath("spec")
	if rev := req.Spec.Revision; rev != "" && !commitPattern.MatchString(rev) {
		allErrs = append(allErrs, ValidateRefName(rev, fldPath.Child("revision"))...)
	}
	if t := req.Spec.TimeoutSeconds; t != nil && (*t < 1 || *t > MaxSyncWaitSeconds) {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("timeoutSeconds"), *t, fmt.Sprintf("must be between 1 and %d", MaxSyncWaitSeconds)))
	}
	return allErrs
}
