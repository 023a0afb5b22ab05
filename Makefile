# The project's commands. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help test lint unit e2e crd demo build control-plane

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

test: lint ## Everything: formatting, clippy, unit, simulator, client and end-to-end tests
	cargo test --workspace

lint: ## cargo fmt --check and clippy with warnings denied
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

unit: ## Unit tests only (no control plane)
	cargo test --workspace --lib --bins

e2e: ## End-to-end tests on a real control plane
	cargo test -p collibra-oauth-operator --test e2e

crd: ## Regenerate crds/oauthclients.yaml from the Rust types
	cargo run -q -- crd > crds/oauthclients.yaml

control-plane: ## Build (or find cached) etcd, kube-apiserver, kube-controller-manager
	bash hack/control-plane/build.sh

build: ## Build the operator and the simulator
	cargo build --workspace --bins

demo: build ## Run it all locally: control plane, simulator, operator, examples/ (Ctrl-C stops)
	bash hack/demo.sh
