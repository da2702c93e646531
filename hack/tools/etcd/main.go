// Command etcd is the upstream etcd server at the version k8s.io/apiserver
// requires; it backs the local kube-apiserver. (`go install` of etcd's own
// command fails because of its replace directives, so we wrap etcdmain.)
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
