//go:build tools

// Package tools pins the kube-apiserver main package so that `go mod tidy`
// keeps k8s.io/kubernetes and its dependencies in go.mod/go.sum.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
