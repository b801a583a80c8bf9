//go:build tools

// Package tools pins the etcd server main package (module go.etcd.io/etcd/server/v3,
// root package main) so that `go mod tidy` keeps it in go.mod/go.sum. It lives in a
// module of its own so that etcd's dependency versions cannot conflict with
// kube-apiserver's.
package tools

import _ "go.etcd.io/etcd/server/v3"
