# virtmesh: make KubeVirt VMs first-class members of an Istio mesh.
# Every tool is pinned and built into ./bin by hack/ scripts; nothing is
# downloaded from anywhere but the Go module proxy.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X github.com/virtmesh/virtmesh/internal/version.Version=$(VERSION)
GO_TEST_FLAGS ?= -count=1

# One cgo setting for every go command here (build, test, demo, hack/ tools),
# because the Go build cache keys packages on it: mixing settings compiles
# the whole dependency tree twice on a first run. Release builds (Dockerfile,
# ko) are static with CGO_ENABLED=0 as well. Set CGO_ENABLED=1 to use -race.
export CGO_ENABLED ?= 0

# GOGC for the compiler in build-only commands (not tests, not the programs
# built): about 20% off a cold build (see hack/lib.sh).
export BUILD_GOGC ?= 400
INTEGRATION_TIMEOUT ?= 20m

# Image: $(REGISTRY)/virtmesh:$(TAG), built by docker (Dockerfile) or ko (.ko.yaml, no daemon).
REGISTRY ?= ghcr.io/virtmesh
TAG ?= $(VERSION)
IMAGE ?= $(REGISTRY)/virtmesh:$(TAG)
IMAGE_BUILDER ?= docker
# The engine that builds the Dockerfile: podman when its socket answers, else docker.
OCI_BIN ?= $(shell if command -v podman >/dev/null 2>&1 && podman ps >/dev/null 2>&1; then echo podman; else echo docker; fi)

# Packages with unit tests: everything except the integration and functional
# suites (the load programs' own unit tests are in).
UNIT_PKGS = $(shell go list ./... | grep -v -e '/tests/integration' -e '/tests/functional')

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate manifests/rbac from the code's +kubebuilder:rbac markers (manifests/webhook is written by hand).
	$$(hack/tools.sh controller-gen) rbac:roleName=virtmesh-manager paths="{./internal/...,./webhook/...,./controllers/...}" output:rbac:artifacts:config=manifests/rbac

.PHONY: crds
crds: ## Regenerate tests/crds (KubeVirt's real CRDs + the NAD CRD).
	hack/crds.sh

.PHONY: verify-crds
verify-crds: ## Fail if tests/crds is stale.
	hack/verify-crds.sh

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: ## Run golangci-lint (pinned, built into bin/) with .golangci.yml.
	$$(hack/tools.sh golangci-lint) run ./...

.PHONY: verify
verify: vet lint verify-crds verify-manifests verify-controlplane-deps shellcheck ## Run every static check CI relies on.

.PHONY: controlplane-deps
controlplane-deps: ## Align hack/tools/controlplane with the product's dependencies (after bumping go.mod).
	hack/controlplane-deps.sh

.PHONY: verify-controlplane-deps
verify-controlplane-deps: ## Fail if hack/tools/controlplane is not aligned (cold builds would compile client-go twice).
	hack/controlplane-deps.sh --check

.PHONY: verify-manifests
verify-manifests: manifests ## Fail if generated manifests are stale.
	@git diff --exit-code -- manifests || { echo "manifests are stale: run 'make manifests' and commit"; exit 1; }

##@ Testing

.PHONY: test
test: test-unit test-integration ## Run unit and integration tests (CI runs it, then make verify).

.PHONY: test-unit
test-unit: ## Run unit tests, golden files and fuzz seeds.
	go test $(GO_TEST_FLAGS) $(UNIT_PKGS)

.PHONY: controlplane
controlplane: ## Build the pinned kube-apiserver, kube-controller-manager and etcd into bin/.
	hack/controlplane.sh

.PHONY: test-integration
test-integration: ## Run the integration suite against a real kube-apiserver, etcd and kube-controller-manager.
	assets="$$(hack/controlplane.sh)" && \
	KUBEBUILDER_ASSETS="$$assets" go test $(GO_TEST_FLAGS) -timeout $(INTEGRATION_TIMEOUT) -v ./tests/integration/...

##@ Benchmarks (figures in docs/benchmarks.md)

.PHONY: bench
bench: ## Run the Go benchmarks (mutation, handler, membership).
	go test -run XXX -bench . -benchtime 2s -count 3 ./webhook/ ./internal/mesh/

.PHONY: load-webhook
load-webhook: ## Drive the webhook server over HTTPS at 1, 8 and 64 clients.
	go run ./tests/load/webhook -clients 1,8,64 -duration 10s

.PHONY: load-controllers
load-controllers: build ## Controllers on 1,000 VMs / 5,000 VMIs (+ launcher pods) / 100 namespaces: convergence, RSS, steady writes, kubectl virtmesh.
	assets="$$(hack/controlplane.sh)" && \
	KUBEBUILDER_ASSETS="$$assets" go run ./tests/load/controllers

# The API server's ClusterIP allocator for the 20,000-VMI run: ipaddress
# (Kubernetes 1.34's, locked on there: each allocation lists every allocated
# address, so it slows as Services accumulate; on 2 shared cores 10,000 Services
# take longer than the 120 s goal even for plain clients without virtmesh) or,
# as a diagnostic, bitmap (that of Kubernetes 1.32 and earlier, on a 1.34 API
# server emulating 1.33: one etcd write per ClusterIP, whatever the number of
# Services), which shows virtmesh's own Service throughput. docs/benchmarks.md
# has both.
CLUSTERIP_ALLOCATOR ?= ipaddress

.PHONY: load-controllers-20k
load-controllers-20k: build ## The same on 4,000 VMs / 20,000 VMIs (+ launcher pods) / 400 namespaces, limits.memory 240Mi (goals: 120 s, 250 MB).
	assets="$$(hack/controlplane.sh)" && \
	KUBEBUILDER_ASSETS="$$assets" go run ./tests/load/controllers -namespaces 400 -goal-converge 120s -goal-rss-mb 250 -memory-limit 240Mi \
		-sync-period 150s -timeout 10m -clusterip-allocator $(CLUSTERIP_ALLOCATOR)

##@ Build

.PHONY: build
build: ## Build the manager (bin/virtmesh) and the kubectl plugin (bin/kubectl-virtmesh).
	GOGC=$(BUILD_GOGC) go build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/virtmesh ./cmd/kubectl-virtmesh

PLUGIN_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64

.PHONY: plugin-dist
plugin-dist: ## Build the kubectl plugin's release archives (_out/kubectl-virtmesh_<os>_<arch>.tar.gz) that .krew.yaml points at.
	@mkdir -p _out && for p in $(PLUGIN_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; dir=_out/kubectl-virtmesh_$${os}_$${arch}; ext=; [ "$$os" = windows ] && ext=.exe; \
		mkdir -p $$dir && GOOS=$$os GOARCH=$$arch GOGC=$(BUILD_GOGC) go build -trimpath -ldflags "-s -w $(LDFLAGS)" \
			-o $$dir/kubectl-virtmesh$$ext ./cmd/kubectl-virtmesh && cp README.md LICENSE $$dir/ && \
		tar -C $$dir -czf $$dir.tar.gz . && rm -r $$dir && echo "_out/kubectl-virtmesh_$${os}_$${arch}.tar.gz" || exit 1; \
	done

.PHONY: image
image: ## Build the image $(IMAGE) (IMAGE_BUILDER=docker|ko; ko writes _out/virtmesh-$(TAG).tar).
ifeq ($(IMAGE_BUILDER),ko)
	mkdir -p _out
	# A tarball holds one image, not a multi-platform index: this machine's platform.
	KO_DOCKER_REPO=$(REGISTRY)/virtmesh VERSION=$(VERSION) $$(hack/tools.sh ko) build --bare --tags $(TAG) --push=false \
		--platform=linux/$$(go env GOARCH) --tarball=_out/virtmesh-$(TAG).tar ./cmd/virtmesh
else
	$(OCI_BIN) build --build-arg VERSION=$(VERSION) -t $(IMAGE) .
endif

.PHONY: push
push: ## Push $(IMAGE) (with ko: build and push in one step).
ifeq ($(IMAGE_BUILDER),ko)
	KO_DOCKER_REPO=$(REGISTRY)/virtmesh VERSION=$(VERSION) $$(hack/tools.sh ko) build --bare --tags $(TAG) ./cmd/virtmesh
else
	$(OCI_BIN) push $(IMAGE)
endif

.PHONY: demo
demo: ## Show virtmesh at work on a real local control plane (builds what it needs).
	hack/controlplane.sh --download & download=$$!; \
	$(MAKE) --no-print-directory build && wait "$$download" && \
	GOGC=$(BUILD_GOGC) go build -o bin/demo ./hack/demo && \
	assets="$$(hack/controlplane.sh)" && \
	KUBEBUILDER_ASSETS="$$assets" bin/demo

##@ kubevirtci dev loop (needs Docker or Podman; see kubevirtci/config.sh)

.PHONY: cluster-up
cluster-up: ## Start a kubevirtci cluster with Istio and Multus, then KubeVirt v1.9.0.
	kubevirtci/up.sh

.PHONY: cluster-down
cluster-down: ## Stop the kubevirtci cluster.
	kubevirtci/down.sh

.PHONY: cluster-sync
cluster-sync: ## Build and push the image to the cluster registry, deploy manifests/default, wait for the rollout.
	kubevirtci/sync.sh

.PHONY: functest
functest: ## Run the functional suite (tests/functional) on the kubevirtci cluster (FUNCTEST_ARGS: ginkgo flags, e.g. --label-filter='!migration').
	kubevirtci/functest.sh $(FUNCTEST_ARGS)

.PHONY: functest-dry-run
functest-dry-run: ## List the functional specs without a cluster (ginkgo --dry-run).
	$$(hack/tools.sh ginkgo) --dry-run -v ./tests/functional

.PHONY: shellcheck
shellcheck: ## bash -n and shellcheck (Debian package, installed by hack/tools.sh if missing) on every shell script.
	sc="$$(hack/tools.sh shellcheck)" && \
	for f in hack/*.sh kubevirtci/*.sh .ci/run; do bash -n "$$f"; done && \
	"$$sc" -x hack/*.sh kubevirtci/*.sh .ci/run

.PHONY: run
run: ## Run the manager against the current kubeconfig (webhook off).
	go run -ldflags "$(LDFLAGS)" ./cmd/virtmesh --enable-webhook=false
