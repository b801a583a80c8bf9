//go:build tools

// Package tools pins the main packages built from k8s.io/kubernetes (kube-apiserver,
// kube-scheduler, kube-controller-manager) so that `go mod tidy` keeps k8s.io/kubernetes
// and every dependency they need in go.mod/go.sum.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
