//go:build tools

// Package tools keeps actionlint in the module graph so that
// `go build github.com/rhysd/actionlint/cmd/actionlint` resolves from this
// go.mod.
package tools

import (
	_ "github.com/rhysd/actionlint/cmd/actionlint"
)
