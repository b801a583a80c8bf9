//go:build tools

// Package tools pins nats-server, for the NATS JetStream receiver tests (a real server with
// its file store, started by tests/e2e/engines/nats/server.py).
package tools

import (
	_ "github.com/nats-io/nats-server/v2"
)
