//go:build tools

// Package tools pins kwok's main package (sigs.k8s.io/kwok/cmd/kwok) so that `go mod tidy`
// keeps it in go.mod/go.sum. kwok plays the nodes and kubelets of the local cluster. It
// lives in a module of its own so that its dependency versions cannot conflict with
// kube-apiserver's or etcd's.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
