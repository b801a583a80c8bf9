//go:build tools

// Package tools pins kubectl, built from the same k8s.io/kubernetes as the control plane,
// for the kubeconfig parity tests (kubectl's own loading rules, not a reimplementation).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kubectl"
)
