package server

import (
	"io"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestLeaderElectionNeedsAnExternalEtcd: replicas over the embedded etcd
// would each keep a store of their own, so --leader-elect alone is refused,
// as are lease timings client-go could not honour.
func TestLeaderElectionNeedsAnExternalEtcd(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--leader-elect"}, "--leader-elect needs --etcd-servers"},
		{[]string{"--leader-elect", "--etcd-servers=https://127.0.0.1:2379", "--leader-elect-renew-deadline=20s"},
			"must be greater than `RenewDeadline`"},
	} {
		o := NewOptions(io.Discard, io.Discard)
		fs := pflag.NewFlagSet("alumiini", pflag.ContinueOnError)
		for _, set := range o.Flags().FlagSets {
			fs.AddFlagSet(set)
		}
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		err := o.Validate(nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error saying %q", c.args, err, c.want)
		}
	}
}
