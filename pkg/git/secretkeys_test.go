package git

import (
	"maps"
	"reflect"
	"testing"
)

// TestSecretKeysAreAllAuthReads: the Secret cache keeps only SecretKeys, so
// AuthFromSecret must read nothing else. Every other key is set to a value
// that would change the result if it were read.
func TestSecretKeysAreAllAuthReads(t *testing.T) {
	for _, tc := range []struct {
		url  string
		data map[string][]byte
	}{
		{"https://git.example/r.git", map[string][]byte{KeyUsername: []byte("u"), KeyPassword: []byte("p"), KeyCACert: nil}},
		{"https://git.example/r.git", map[string][]byte{KeyBearerToken: []byte("t")}},
	} {
		full := maps.Clone(tc.data)
		for _, k := range []string{"token", "value", "ssh-privatekey", "known_hosts.old", "caFile", "user", "pass"} {
			full[k] = []byte("read-me-and-you-fail")
		}
		kept := map[string][]byte{}
		for _, k := range SecretKeys {
			if v, ok := full[k]; ok {
				kept[k] = v
			}
		}
		a, errA := AuthFromSecret("s", tc.url, full)
		b, errB := AuthFromSecret("s", tc.url, kept)
		if (errA == nil) != (errB == nil) || !reflect.DeepEqual(a, b) {
			t.Errorf("%v: from the whole Secret %+v %v, from SecretKeys only %+v %v", tc.data, a, errA, b, errB)
		}
	}
}
