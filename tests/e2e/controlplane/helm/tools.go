//go:build tools

// Package tools pins helm, for the chart tests (helm lint and helm template run by helm
// itself, not a reimplementation of its template engine).
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
