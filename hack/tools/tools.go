//go:build tools

// Package tools keeps helm's command in the module graph so that
// `go build helm.sh/helm/v3/cmd/helm` resolves it from this go.mod.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
