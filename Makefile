# The project's commands. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help test test-deps lint unit e2e e2e-namespaced e2e-oldest packaging crd deploy tools demo build control-plane background-builds upgrade bench

# The oldest Kubernetes minor the end-to-end suite runs on (its Go module is
# hack/control-plane/v$(KUBE_OLDEST)); the newest is hack/control-plane itself.
KUBE_OLDEST ?= 1.34

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

test: background-builds lint test-deps node-deps docs ## Everything: formatting, clippy, the user guide, unit, doc, simulator, client, end-to-end (newest and oldest Kubernetes), upgrade, reliability (short), packaging and node tests, a short fuzz run
	cargo test --workspace
	$(MAKE) e2e-namespaced
	$(MAKE) e2e-oldest
	$(MAKE) fuzz FUZZ_SECONDS=20 FUZZ_SEED=1

test-deps: ## Install what the tests need beyond Rust and Go: lua5.4 (Argo CD health check), curl, python3-venv, a JDK and Maven (token examples), from Debian
	@command -v lua5.4 >/dev/null || (apt-get update && apt-get install -y lua5.4) || \
		{ echo 'lua5.4 is needed by the packaging tests (Debian: apt-get install lua5.4)' >&2; exit 1; }
	@command -v curl >/dev/null || (apt-get update && apt-get install -y curl) || \
		{ echo 'curl is needed by the token examples test (Debian: apt-get install curl)' >&2; exit 1; }
	@python3 -c 'import ensurepip, venv' 2>/dev/null || (apt-get update && apt-get install -y python3 python3-venv) || \
		{ echo 'python3 with venv is needed by the token examples test (Debian: apt-get install python3-venv)' >&2; exit 1; }
	@{ command -v javac && command -v java; } >/dev/null || (apt-get update && apt-get install -y openjdk-17-jdk-headless) || \
		{ echo 'a JDK (java, javac) is needed by the token examples test (Debian: apt-get install openjdk-17-jdk-headless)' >&2; exit 1; }
	@command -v mvn >/dev/null || (apt-get update && apt-get install -y maven) || \
		{ echo 'Maven is needed by the token examples test (Debian: apt-get install maven)' >&2; exit 1; }

lint: ## cargo fmt --check and clippy with warnings denied
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

unit: ## Unit tests only (no control plane)
	cargo test --workspace --lib --bins

e2e: ## End-to-end tests on a real control plane
	cargo test -p collibra-oauth-operator --test e2e

e2e-namespaced: ## The end-to-end suite again with the chart's namespaced RBAC only (no cluster-wide rule)
	E2E_RBAC=namespaced cargo test -p collibra-oauth-operator --test e2e -- --skip packaging

e2e-oldest: ## The end-to-end suite and the upgrade test on the oldest supported Kubernetes (KUBE_OLDEST=1.34); `make e2e` uses the newest
	CONTROL_PLANE_VERSION=$(KUBE_OLDEST) cargo test -p collibra-oauth-operator --test e2e --test upgrade

upgrade: ## Upgrade from the previous release (hack/previous-release/ref, from git history): its CRD, chart and operator, then the current ones
	cargo test -p collibra-oauth-operator --test upgrade

CRDS := oauthclients collibraconnections clustercollibraconnections
crd: ## Regenerate crds/*.yaml from the Rust types (and the chart's copies, and deploy/)
	cargo build -q -p collibra-oauth-operator --bin collibra-oauth-operator
	for k in $(CRDS); do \
		target/debug/collibra-oauth-operator crd $$k > crds/$$k.yaml && \
		cp crds/$$k.yaml charts/collibra-oauth-operator/crds/$$k.yaml || exit 1; \
	done
	bash hack/render-deploy.sh

deploy: ## Render deploy/ (kustomize) from the Helm chart
	bash hack/render-deploy.sh

packaging: test-deps ## The install paths: chart, deploy/, RBAC, kstatus and Argo CD health, on a real control plane
	cargo test -p collibra-oauth-operator --test e2e -- packaging
	cargo test -p collibra-oauth-operator --test packaging

tools: ## Build (or find cached) helm and kstatus from hack/tools
	bash hack/tools/build.sh

.PHONY: promtool monitoring
promtool: ## Build (or find cached) promtool and promql-selectors from hack/tools/promtool
	bash hack/tools/promtool/build.sh

monitoring: promtool ## The chart's PrometheusRule and dashboard: promtool check/test rules, and every metric they use against a running operator's /metrics (part of `cargo test --workspace`)
	cargo test -p collibra-oauth-operator --test monitoring

control-plane: ## Build (or find cached) etcd, kube-apiserver, kube-controller-manager: make control-plane [KUBE=1.34] (default newest)
	bash hack/control-plane/build.sh $(KUBE)

background-builds: ## Start building the control planes and the previous release in the background (make test does, to overlap with cargo)
	@bash hack/background-builds.sh $(KUBE_OLDEST)

build: ## Build the operator and the simulator
	cargo build --workspace --bins

demo: build ## Run it all locally: control plane, simulator, operator, examples/ (Ctrl-C stops)
	bash hack/demo.sh

.PHONY: reliability fuzz
reliability: ## Full reliability suites (crash 200 objects x 30 kill rounds, faults on 200 objects, bad input, hygiene), then the node faults at full size (reliability-node); see RELIABILITY.md
	RELIABILITY_FULL=1 cargo test -p collibra-oauth-operator --test reliability
	$(MAKE) reliability-node

.PHONY: reliability-node disaster-recovery
reliability-node: node-deps test-deps ## Faults on a real node at full size (200 OAuthClients, 3 rounds of: leader container killed through containerd, leader Pod deleted, kubelet and containerd restarted, leader cut from Collibra, helm upgrade); see bench-results/reliability/node-faults.md
	RELIABILITY_FULL=1 cargo test -p collibra-oauth-operator --test node -- node_faults

disaster-recovery: ## Restore from an etcd snapshot older than Collibra's state (etcdctl/etcdutl from hack/control-plane/etcd-tools); docs/src/operations/disaster-recovery.md
	cargo test -p collibra-oauth-operator --test disaster_recovery

FUZZ_SECONDS ?= 60
FUZZ_SEED ?= 0
fuzz: ## cargo fuzz on the Collibra response parsing (nightly; installs cargo-fuzz when missing): make fuzz [FUZZ_SECONDS=60] [FUZZ_SEED=0 (random)]
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd crates/collibra-client && mkdir -p fuzz/corpus/parse_responses && \
		cargo +nightly fuzz run parse_responses --fuzz-dir fuzz fuzz/corpus/parse_responses fuzz/seeds -- -max_total_time=$(FUZZ_SECONDS) -seed=$(FUZZ_SEED)

N ?= 1000
RESYNC ?= 60s
bench: ## Rollout benchmark, not part of `make test`: make bench N=1000 [RESYNC=60s] [JSON=out.json] [OPERATOR_ARGS="--concurrency 16"]
	cargo build --release -p collibra-oauth-operator -p collibra-oauth-bench
	target/release/collibra-oauth-bench --n $(N) --resync $(RESYNC) $(if $(JSON),--json $(JSON)) -- $(OPERATOR_ARGS)

.PHONY: bench-connections
CONNECTIONS ?= 10
bench-connections: ## Connections at scale, not part of `make test`: make bench-connections N=1000 CONNECTIONS=10 [RESYNC=60s] [JSON=out.json] [BENCH_ARGS="--kind cluster"] [OPERATOR_ARGS="--concurrency 64"]
	cargo build --release -p collibra-oauth-operator -p collibra-oauth-bench
	target/release/collibra-oauth-bench-connections --n $(N) --connections $(CONNECTIONS) --resync $(RESYNC) $(if $(JSON),--json $(JSON)) $(BENCH_ARGS) -- $(OPERATOR_ARGS)

.PHONY: bench-peer
HYDRA_MAESTER_SRC ?=
bench-peer: ## Side by side with ory/hydra-maester + Ory Hydra, not part of `make test`: make bench-peer N=1000 HYDRA_MAESTER_SRC=<git clone of github.com/ory/hydra-maester> [JSON=out.json] [PEER_ARGS="--steady 60s"]
	cargo build --release -p collibra-oauth-operator -p collibra-oauth-bench
	peer_dir="$$(bash hack/peer/build.sh $(HYDRA_MAESTER_SRC) | tail -n 1)" && \
		target/release/collibra-oauth-bench-peer --n $(N) --peer-dir "$$peer_dir" $(if $(JSON),--json $(JSON)) $(PEER_ARGS)

.PHONY: bench-latency bench-peer-latency
R ?= 0,1000
LATENCY_MS ?= 20
LATENCY_RESYNC ?= 10m
bench-latency: ## Apply-to-Ready latency (issue 22), not part of `make test` (a smoke run is): make bench-latency R=0,1000 LATENCY_MS=20 [JSON=out.json] [BENCH_ARGS="--samples 100 --bursts 20,100"] [OPERATOR_ARGS="--concurrency 64"]
	cargo build --release -p collibra-oauth-operator -p collibra-oauth-bench
	target/release/collibra-oauth-bench --mode latency --resident $(R) --latency-ms $(LATENCY_MS) --resync $(LATENCY_RESYNC) $(if $(JSON),--json $(JSON)) $(BENCH_ARGS) -- $(OPERATOR_ARGS)

bench-peer-latency: ## Apply-to-Ready latency side by side with hydra-maester + Ory Hydra: make bench-peer-latency R=0,1000 HYDRA_MAESTER_SRC=<git clone> [JSON=out.json] [PEER_ARGS="--configs maester-tuned,operator-tuned"]
	cargo build --release -p collibra-oauth-operator -p collibra-oauth-bench
	peer_dir="$$(bash hack/peer/build.sh $(HYDRA_MAESTER_SRC) | tail -n 1)" && \
		target/release/collibra-oauth-bench-peer --mode latency --resident $(R) --peer-dir "$$peer_dir" $(if $(JSON),--json $(JSON)) $(PEER_ARGS)

.PHONY: image node node-deps
node-deps: ## Install what `make image` and the node tests need: podman, containerd, runc, CNI plugins, iptables (Debian)
	bash hack/node/deps.sh

image: node-deps ## Build the operator's OCI image with podman (static binary, no base image; cached by inputs); prints the dir holding image.tar and ref
	bash hack/image/build.sh

node: node-deps test-deps ## The chart and deploy/ on a real node (containerd, kubelet, kube-proxy): install, probes, rotation, upgrade, leader hand-over, uninstall
	cargo test -p collibra-oauth-operator --test node

.PHONY: mdbook docs docs-gen docs-check
# mdBook builds the user guide (docs/book.toml); pinned, and installed with
# cargo from crates.io when missing or another version.
MDBOOK_VERSION := 0.5.4
mdbook:
	@mdbook --version 2>/dev/null | grep -qx 'mdbook v$(MDBOOK_VERSION)' || \
		cargo install mdbook --locked --version $(MDBOOK_VERSION)

docs: mdbook ## Build the user guide (mdBook) into docs/book/; fails on a broken SUMMARY.md or any mdBook warning
	@out="$$(mdbook build docs 2>&1)"; status=$$?; echo "$$out"; \
		[ $$status -eq 0 ] && ! grep -q 'WARN' <<<"$$out" || { echo 'mdbook build docs: fix the errors and warnings above' >&2; exit 1; }

docs-gen: ## Regenerate the generated reference pages (API from the CRDs, flags, chart values) in docs/src/reference/
	UPDATE_DOCS=1 cargo test -p collibra-oauth-operator --test docs

docs-check: docs ## The guide builds; generated pages current; every reason on the troubleshooting page; every relative link and anchor resolves
	cargo test -p collibra-oauth-operator --test docs
