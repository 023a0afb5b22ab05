//go:build tools

// Package tools keeps promtool's command in the module graph so that
// `go build github.com/prometheus/prometheus/cmd/promtool` resolves it from
// this go.mod.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
