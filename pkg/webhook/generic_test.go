package webhook

import "testing"

func TestParseGeneric(t *testing.T) {
	runParseCases(t, "generic", []parseCase{{
		name:    "full ref",
		headers: map[string]string{"X-Delivery-Id": "ci-run-48213"},
		payload: "generic-push.json",
		want: &Push{
			Provider:   "generic",
			DeliveryID: "ci-run-48213",
			URLs:       []string{"https://git.example.com/team/app-config.git"},
			Changes:    []Change{{Ref: "refs/heads/main", Commit: "3f786850e387550fdab836ed7e6dc881de23001b"}},
		},
	}, {
		name:    "branch name",
		payload: "generic-branch-name.json",
		want: &Push{
			Provider: "generic",
			URLs:     []string{"git@git.example.com:team/app-config.git"},
			Changes:  []Change{{Ref: "refs/heads/staging", Commit: "89e6c98d92887913cadf06b2adb97f26cde4849b"}},
		},
	}, {
		name: "tag",
		body: `{"url":"https://git.example.com/team/app-config","ref":"refs/tags/v1.0","after":"3f786850e387550fdab836ed7e6dc881de23001b"}`,
		want: &Push{
			Provider: "generic",
			URLs:     []string{"https://git.example.com/team/app-config"},
			Changes:  []Change{{Ref: "refs/tags/v1.0", Commit: "3f786850e387550fdab836ed7e6dc881de23001b"}},
		},
	}, {
		name:    "no url",
		body:    `{"ref":"main","after":"3f786850e387550fdab836ed7e6dc881de23001b"}`,
		wantErr: ErrMalformed,
		errHas:  "payload names no repository URL",
	}, {
		name:    "url that is not a repository",
		body:    `{"url":"https://git.example.com","ref":"main","after":"3f786850e387550fdab836ed7e6dc881de23001b"}`,
		wantErr: ErrMalformed,
		errHas:  "payload names no repository URL",
	}, {
		name:    "no after",
		body:    `{"url":"https://git.example.com/team/app-config.git","ref":"main"}`,
		wantErr: ErrMalformed,
		errHas:  "after: missing",
	}, {
		name:    "no ref",
		body:    `{"url":"https://git.example.com/team/app-config.git","after":"3f786850e387550fdab836ed7e6dc881de23001b"}`,
		wantErr: ErrMalformed,
		errHas:  "ref: missing",
	}, {
		name:    "branch name git refuses",
		body:    `{"url":"https://git.example.com/team/app-config.git","ref":"feature..x","after":"3f786850e387550fdab836ed7e6dc881de23001b"}`,
		wantErr: ErrMalformed,
		errHas:  `ref: "refs/heads/feature..x" is not a valid ref name`,
	}, {
		name:    "url of the wrong type",
		body:    `{"url":["https://git.example.com/team/app-config.git"]}`,
		wantErr: ErrMalformed,
		errHas:  "url: want a string, got JSON array",
	}, {
		name:    "not JSON",
		body:    `url=https://git.example.com/team/app-config.git`,
		wantErr: ErrMalformed,
		errHas:  "body is not JSON",
	}})
}

func FuzzGeneric(f *testing.F) {
	fuzzProvider(f, "generic", nil, []string{""})
}
