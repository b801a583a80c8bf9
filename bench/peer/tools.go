//go:build tools

// Package peer pins kubernetes-event-exporter (resmoio) for the side-by-side benchmark.
// Nothing here is compiled: build.sh runs `go build` on the exporter's main package from the
// module cache, at the version go.mod requires.
package peer

import _ "github.com/resmoio/kubernetes-event-exporter"
