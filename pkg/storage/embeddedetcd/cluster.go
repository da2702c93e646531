package embeddedetcd

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
)

// Cluster makes the embedded etcd one member of several, one per replica:
// etcd's own Raft keeps their data, and a replica that restarts with its
// data directory rejoins as the member it was.
type Cluster struct {
	// Name is this member's, a key of Members.
	Name string
	// Members are all members by name, with the URLs peers and clients
	// reach them on (https).
	Members map[string]MemberURLs
	// ListenPeer and ListenClient are the addresses to bind (host:port; an
	// empty host binds every address).
	ListenPeer, ListenClient string
	// CAFile and CAKeyFile are the CA every member issues its own
	// certificates from at start, and checks the others' against.
	CAFile, CAKeyFile string
	// Formed remembers, outside the members' volumes, that the cluster has
	// formed once (see join).
	Formed FormedRecord
}

// FormedRecord keeps whether the cluster has formed once; String names
// where, for the operator.
type FormedRecord interface {
	Formed(ctx context.Context) (bool, error)
	MarkFormed(ctx context.Context) error
	String() string
}

// MemberURLs are where one member is reached.
type MemberURLs struct{ Peer, Client string }

// ParseMembers reads NAME=PEER_URL=CLIENT_URL,... (what --etcd-members takes).
func ParseMembers(s string) (map[string]MemberURLs, error) {
	members := map[string]MemberURLs{}
	for _, entry := range strings.Split(s, ",") {
		parts := strings.Split(strings.TrimSpace(entry), "=")
		if len(parts) != 3 || parts[0] == "" {
			return nil, fmt.Errorf("%q: want NAME=PEER_URL=CLIENT_URL", entry)
		}
		for _, raw := range parts[1:] {
			if u, err := url.Parse(raw); err != nil || u.Scheme != "https" || u.Host == "" {
				return nil, fmt.Errorf("%q: %q is not an https URL with a host", entry, raw)
			}
		}
		if _, dup := members[parts[0]]; dup {
			return nil, fmt.Errorf("member %q named twice", parts[0])
		}
		members[parts[0]] = MemberURLs{Peer: parts[1], Client: parts[2]}
	}
	return members, nil
}

// OrdinalMembers are the members of a StatefulSet of size replicas whose
// pods are named like name (PREFIX-ORDINAL), reached through its headless
// Service's domain on etcd's usual ports.
func OrdinalMembers(name string, replicas int, domain string) (map[string]MemberURLs, error) {
	i := strings.LastIndex(name, "-")
	if i < 0 || strings.Trim(name[i+1:], "0123456789") != "" || name[i+1:] == "" {
		return nil, fmt.Errorf("member name %q does not end in -ORDINAL as a StatefulSet's pods do", name)
	}
	members := map[string]MemberURLs{}
	for n := range replicas {
		member := fmt.Sprintf("%s%d", name[:i+1], n)
		host := member + "." + domain
		members[member] = MemberURLs{Peer: "https://" + host + ":2380", Client: "https://" + host + ":2379"}
	}
	return members, nil
}

func (c *Cluster) validate() error {
	if _, ok := c.Members[c.Name]; !ok {
		return fmt.Errorf("this member %q is not among the etcd members %v", c.Name, slices.Sorted(maps.Keys(c.Members)))
	}
	if c.Formed == nil {
		return errors.New("an etcd cluster of several members needs a record of whether it has formed")
	}
	if c.CAFile == "" || c.CAKeyFile == "" {
		return errors.New("an etcd cluster of several members needs a CA (certificate and key) to issue its members' certificates")
	}
	return nil
}

// configure sets ecfg for this member, joining the cluster as it stands.
func (c *Cluster) configure(ctx context.Context, ecfg *embed.Config, creds *credentials) error {
	self := c.Members[c.Name]
	peer, err := listenURL(c.ListenPeer)
	if err != nil {
		return fmt.Errorf("--etcd-listen-peer-address: %w", err)
	}
	client, err := listenURL(c.ListenClient)
	if err != nil {
		return fmt.Errorf("--etcd-listen-client-address: %w", err)
	}
	selfPeer, _ := url.Parse(self.Peer)
	selfClient, _ := url.Parse(self.Client)
	ecfg.Name = c.Name
	ecfg.ListenPeerUrls = []url.URL{*peer}
	ecfg.AdvertisePeerUrls = []url.URL{*selfPeer}
	// The API server of this replica uses the loopback listener.
	ecfg.ListenClientUrls = []url.URL{*client, {Scheme: "https", Host: "127.0.0.1:0"}}
	ecfg.AdvertiseClientUrls = []url.URL{*selfClient}
	ecfg.InitialClusterToken = "alumiini"
	// Peers are trusted by the members' private CA; etcd's extra check
	// that a peer's certificate names match its address would depend on
	// reverse DNS of pod IPs being current.
	ecfg.PeerTLSInfo.SkipClientSANVerify = true
	state, initial, err := c.join(ctx, ecfg.Dir, creds)
	if err != nil {
		return err
	}
	ecfg.ClusterState, ecfg.InitialCluster = state, initial
	return nil
}

// join decides how this member starts. With its data directory it restarts
// as the member it was. Without one, it asks the other members: when they
// answer, it joins as the member the cluster expects, or, if the cluster
// knows a member of its name that has run (its data was lost), it is
// removed and added anew, so a replica whose volume was lost comes back by
// itself. When none answers, the cluster is new (every replica starting at
// once) unless Formed says it formed before: then this member waits for
// one with data. Starting anew then would come back under the member's old
// identity with an empty log, and with another member that missed the last
// writes it would make a quorum that has lost them.
func (c *Cluster) join(ctx context.Context, dataDir string, creds *credentials) (state, initial string, err error) {
	static := c.initialCluster(nil)
	switch _, err := os.Stat(filepath.Join(dataDir, "member")); {
	case err == nil:
		return embed.ClusterStateFlagExisting, static, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", "", fmt.Errorf("reading etcd's data directory %s: %w", dataDir, err)
	}
	cli, err := c.clientOfOthers(creds)
	if err != nil {
		return "", "", err
	}
	defer cli.Close()
	asked, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// etcd answers clients only once its member has a quorum: "no answer"
	// means no quorum runs, which is also the case when every member is
	// starting at once. Only the formed record tells the two apart.
	// Serializable: a member that runs answers without asking the leader.
	list, err := cli.MemberList(asked, clientv3.WithSerializable())
	if err != nil {
		formed, recordErr := c.Formed.Formed(ctx)
		switch {
		case recordErr != nil:
			return "", "", fmt.Errorf("no other etcd member answers (%v), and whether the cluster formed before is unknown: %w", err, recordErr)
		case formed:
			return "", "", fmt.Errorf("this etcd member has no data and no other member answers (%v), but the cluster formed before "+
				"(%s says so): it joins once members with data run again; if every member's data is gone for good, "+
				"delete that record to start a new, empty cluster", err, c.Formed)
		}
		klog.InfoS("No other etcd member answers; starting a new cluster", "member", c.Name, "err", err.Error())
		return embed.ClusterStateFlagNew, static, nil
	}
	self := c.Members[c.Name]
	for _, m := range list.Members {
		if !slices.Contains(m.PeerURLs, self.Peer) {
			continue
		}
		if m.Name == "" { // listed at bootstrap, never started: start as it
			return embed.ClusterStateFlagExisting, c.initialCluster(list.Members), nil
		}
		klog.InfoS("This etcd member's data is gone; removing it from the cluster to add it anew", "member", c.Name, "id", m.ID)
		if err := retrying(ctx, func(ctx context.Context) error { _, err := cli.MemberRemove(ctx, m.ID); return err }); err != nil {
			return "", "", fmt.Errorf("removing etcd member %s (%x), whose data is lost, to add it anew: %w", c.Name, m.ID, err)
		}
	}
	var added *clientv3.MemberAddResponse
	if err := retrying(ctx, func(ctx context.Context) (err error) {
		added, err = cli.MemberAdd(ctx, []string{self.Peer})
		return err
	}); err != nil {
		return "", "", fmt.Errorf("adding etcd member %s to the cluster: %w", c.Name, err)
	}
	klog.InfoS("Added this etcd member to the cluster", "member", c.Name, "id", added.Member.ID)
	return embed.ClusterStateFlagExisting, c.initialCluster(added.Members), nil
}

// retrying calls change until it succeeds, for up to a minute. etcd
// refuses a membership change while it thinks it would leave the cluster
// without a healthy quorum ("unhealthy cluster"), as when the member to
// replace stopped moments ago and still counts as connected.
func retrying(ctx context.Context, change func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		attempt, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		last = change(attempt)
		return last == nil, nil
	})
	if err != nil && last != nil {
		return last
	}
	return err
}

// initialCluster is name=peerURL for each member: the configured ones, or
// those the cluster lists (named by their peer URL when not started yet).
func (c *Cluster) initialCluster(listed []*etcdserverpb.Member) string {
	var entries []string
	if listed == nil {
		for name, m := range c.Members {
			entries = append(entries, name+"="+m.Peer)
		}
	}
	for _, m := range listed {
		name := m.Name
		for configured, urls := range c.Members {
			if slices.Contains(m.PeerURLs, urls.Peer) {
				name = configured
			}
		}
		for _, u := range m.PeerURLs {
			entries = append(entries, name+"="+u)
		}
	}
	slices.Sort(entries)
	return strings.Join(entries, ",")
}

// clientOfOthers is an etcd client of the other members, with a client
// certificate of the members' CA.
func (c *Cluster) clientOfOthers(creds *credentials) (*clientv3.Client, error) {
	var endpoints []string
	for name, m := range c.Members {
		if name != c.Name {
			endpoints = append(endpoints, m.Client)
		}
	}
	info := transport.TLSInfo{CertFile: creds.client.CertFile, KeyFile: creds.client.KeyFile, TrustedCAFile: creds.client.CAFile}
	tlsConfig, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("the etcd client certificate: %w", err)
	}
	return clientv3.New(clientv3.Config{Endpoints: endpoints, TLS: tlsConfig, DialTimeout: 3 * time.Second})
}

// hosts are the names and addresses this member is reached by, for its
// certificate.
func (c *Cluster) hosts() (dns []string, ips []net.IP) {
	self := c.Members[c.Name]
	for _, raw := range []string{self.Peer, self.Client} {
		u, _ := url.Parse(raw)
		if ip := net.ParseIP(u.Hostname()); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, u.Hostname())
		}
	}
	return append(dns, "localhost"), append(ips, net.IPv4(127, 0, 0, 1))
}

func listenURL(address string) (*url.URL, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return &url.URL{Scheme: "https", Host: net.JoinHostPort(host, port)}, nil
}
