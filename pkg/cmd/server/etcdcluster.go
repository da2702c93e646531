package server

import (
	"context"
	"fmt"
	"net"
	"os"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/falsesystems/alumiini/pkg/storage/embeddedetcd"
)

// EtcdClusterOptions make the embedded etcd one member of several, one per
// replica (--etcd-cluster-size): no external database, and the API stays up
// while a quorum of replicas runs.
type EtcdClusterOptions struct {
	// Size is the number of members; 1 is a single member on loopback.
	Size int
	// Name is this member's, by default the host name (a StatefulSet's pod
	// name, PREFIX-ORDINAL).
	Name string
	// PeerDomain is the headless Service's domain the members are reached
	// through: member PREFIX-i is PREFIX-i.DOMAIN, ports 2380 (peers) and
	// 2379 (clients).
	PeerDomain string
	// Members, when set, lists the members and their URLs instead
	// (NAME=PEER_URL=CLIENT_URL,...), as etcd's --initial-cluster does.
	Members string
	// ListenPeer and ListenClient are the addresses bound.
	ListenPeer, ListenClient string
	// CAFile and CAKeyFile are the CA each member issues its certificates
	// from (a Secret shared by the replicas).
	CAFile, CAKeyFile string
}

func newEtcdClusterOptions() EtcdClusterOptions {
	return EtcdClusterOptions{Size: 1, ListenPeer: ":2380", ListenClient: ":2379"}
}

// AddFlags adds the embedded etcd cluster's flags.
func (o *EtcdClusterOptions) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.Size, "etcd-cluster-size", o.Size,
		"Members of the embedded etcd, one per replica (3 or 5 for high availability; 1: a single member on loopback).")
	fs.StringVar(&o.Name, "etcd-member-name", o.Name, "This replica's etcd member name (empty: the host name, PREFIX-ORDINAL in a StatefulSet).")
	fs.StringVar(&o.PeerDomain, "etcd-peer-domain", o.PeerDomain,
		"Domain of the headless Service the members are reached through: member PREFIX-i is PREFIX-i.DOMAIN:2380 (peers) and :2379 (clients).")
	fs.StringVar(&o.Members, "etcd-members", o.Members,
		"The members instead of --etcd-peer-domain: NAME=PEER_URL=CLIENT_URL,... (https).")
	fs.StringVar(&o.ListenPeer, "etcd-listen-peer-address", o.ListenPeer, "Address the embedded etcd member serves its peers on.")
	fs.StringVar(&o.ListenClient, "etcd-listen-client-address", o.ListenClient,
		"Address the embedded etcd member serves the other members' clients on (this replica's API server uses loopback).")
	fs.StringVar(&o.CAFile, "etcd-ca-file", o.CAFile, "CA certificate the embedded etcd members issue their certificates from and trust.")
	fs.StringVar(&o.CAKeyFile, "etcd-ca-key-file", o.CAKeyFile, "Key of --etcd-ca-file.")
}

// clustered reports whether the embedded etcd has several members.
func (o *EtcdClusterOptions) clustered() bool { return o.Size > 1 || o.Members != "" }

// Validate checks the options; external says --etcd-servers is given.
func (o *EtcdClusterOptions) Validate(external bool) []error {
	if !o.clustered() {
		if o.Size < 1 {
			return []error{fmt.Errorf("--etcd-cluster-size must be at least 1, got %d", o.Size)}
		}
		return nil
	}
	var errs []error
	if external {
		errs = append(errs, fmt.Errorf("--etcd-cluster-size and --etcd-members are for the embedded etcd; not with --etcd-servers"))
	}
	if o.Size%2 == 0 {
		errs = append(errs, fmt.Errorf("--etcd-cluster-size %d: use an odd number (3 or 5); an even one tolerates no more failures than one less", o.Size))
	}
	if members, err := embeddedetcd.ParseMembers(o.Members); o.Members != "" && err == nil && (len(members) < 3 || len(members)%2 == 0) {
		errs = append(errs, fmt.Errorf("--etcd-members lists %d members: use an odd number, 3 or more", len(members)))
	}
	if o.Members == "" && o.PeerDomain == "" {
		errs = append(errs, fmt.Errorf("--etcd-cluster-size %d needs --etcd-peer-domain (or --etcd-members)", o.Size))
	}
	if o.CAFile == "" || o.CAKeyFile == "" {
		errs = append(errs, fmt.Errorf("--etcd-cluster-size %d needs --etcd-ca-file and --etcd-ca-key-file: each member issues its certificates from that CA", o.Size))
	}
	if o.Members == "" && (portOf(o.ListenPeer) != "2380" || portOf(o.ListenClient) != "2379") {
		errs = append(errs, fmt.Errorf("--etcd-peer-domain reaches members on ports 2380 and 2379; listen on those, or list the members with --etcd-members"))
	}
	if _, err := o.cluster(nil, ""); err != nil && len(errs) == 0 {
		errs = append(errs, err)
	}
	return errs
}

// formedConfigMap records that the embedded etcd cluster formed once, in
// the target cluster (outside every member's volume): the ConfigMap
// alumiini-etcd-formed exists.
type formedConfigMap struct {
	client    kubernetes.Interface
	namespace string
}

const formedConfigMapName = "alumiini-etcd-formed"

func (f formedConfigMap) String() string {
	return "ConfigMap " + f.namespace + "/" + formedConfigMapName
}

func (f formedConfigMap) Formed(ctx context.Context) (bool, error) {
	_, err := f.client.CoreV1().ConfigMaps(f.namespace).Get(ctx, formedConfigMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading ConfigMap %s/%s: %w", f.namespace, formedConfigMapName, err)
	}
	return true, nil
}

func (f formedConfigMap) MarkFormed(ctx context.Context) error {
	record := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: formedConfigMapName, Namespace: f.namespace},
		Data: map[string]string{"note": "alumiini's embedded etcd cluster has formed: a member without data joins it, never starts a new one"}}
	_, err := f.client.CoreV1().ConfigMaps(f.namespace).Create(ctx, record, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating ConfigMap %s/%s: %w", f.namespace, formedConfigMapName, err)
	}
	return nil
}

// cluster is the embedded etcd's Cluster, or nil for a single member;
// target reaches the cluster that keeps its formed record in namespace.
func (o *EtcdClusterOptions) cluster(target *rest.Config, namespace string) (*embeddedetcd.Cluster, error) {
	if !o.clustered() {
		return nil, nil
	}
	name := o.Name
	if name == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("naming this etcd member (--etcd-member-name): %w", err)
		}
		name = host
	}
	var members map[string]embeddedetcd.MemberURLs
	var err error
	if o.Members != "" {
		members, err = embeddedetcd.ParseMembers(o.Members)
		if err == nil && o.Size > 1 && len(members) != o.Size {
			err = fmt.Errorf("--etcd-members lists %d members, --etcd-cluster-size says %d", len(members), o.Size)
		}
	} else {
		members, err = embeddedetcd.OrdinalMembers(name, o.Size, o.PeerDomain)
	}
	if err != nil {
		return nil, fmt.Errorf("the embedded etcd's members: %w", err)
	}
	cluster := &embeddedetcd.Cluster{Name: name, Members: members, ListenPeer: o.ListenPeer, ListenClient: o.ListenClient,
		CAFile: o.CAFile, CAKeyFile: o.CAKeyFile}
	if target != nil {
		client, err := kubernetes.NewForConfig(target)
		if err != nil {
			return nil, fmt.Errorf("the client of the embedded etcd's formed record: %w", err)
		}
		cluster.Formed = formedConfigMap{client: client, namespace: namespace}
	}
	return cluster, nil
}

func portOf(address string) string {
	_, port, _ := net.SplitHostPort(address)
	return port
}
