//go:build tools

// Package tools records the etcd server this module builds for the integration
// suites, so that `go mod tidy` keeps its dependencies.
package tools

import _ "go.etcd.io/etcd/server/v3"
