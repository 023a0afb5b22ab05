//go:build tools

// Package tools keeps etcd's command-line tools in the module graph so that
// `go build go.etcd.io/etcd/etcdctl/v3` and `.../etcdutl/v3` resolve them
// from this go.mod, at the etcd version of the test control plane.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
)
