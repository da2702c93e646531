// Package webhook receives push webhooks from git hosts (GitHub, GitLab,
// Gitea/Forgejo/Gogs, Bitbucket Cloud and Server, and a generic HMAC form)
// and wakes the workers of the GitRepositories a push concerns. There are no
// Receiver objects: a push's clone URLs are matched against every
// GitRepository by MatchKey, and its refs against what each one follows.
//
// Every sender is untrusted. A delivery must be signed with the platform
// secret or with the secret a matching GitRepository names; bodies are
// capped, parsed into small structs and fuzzed; requests are rate limited per
// source address; and the answer says what was triggered and what was
// skipped, so a webhook never succeeds silently.
package webhook
