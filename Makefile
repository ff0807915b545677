# Sitelink build, test and packaging. Run as root on Debian 12 or EL 7/8/9.
#   make build   static binaries in bin/
#   make test    the whole suite (root, namespaces, real tools; installs what it needs)
#   make demo    a running sitelinkd in a sandbox (DEMO_FOR=30s to stop by itself)
#   make bench   benchmarks (results go in docs/BENCHMARKS.md by hand)
#   make lint    gofmt, go vet, staticcheck
#   make proto   regenerate the plugin API's gRPC code

SHELL      := /bin/bash
GO         ?= go
export GOTOOLCHAIN := local
export CGO_ENABLED := 0

VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null | sed 's/^v//' || echo 0.1.0)
COMMIT     ?= $(shell git rev-parse --short HEAD 2>/dev/null)
DATE       ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS    := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)
# Build tags that drop code nothing here uses, for smaller binaries and a smaller idle
# RSS (a process maps most of its binary; docs/benchmarks/supervisor.md):
#   grpcnotrace       gRPC without golang.org/x/net/trace (its HTML debug pages)
#   nethttpomithttp2  net/http without its bundled HTTP/2; nothing here serves or dials
#                     HTTP over TLS, gRPC has its own HTTP/2 transport
# Exported through GOFLAGS so that the tests and benchmarks make runs, and the binaries
# they build, are built like the shipped ones.
BUILD_TAGS := grpcnotrace,nethttpomithttp2
export GOFLAGS := -tags=$(BUILD_TAGS)
GOBUILD    := $(GO) build -trimpath -ldflags '$(LDFLAGS)'

# Built-in plugins: every plugins/NAME/main.go. They are built as one binary
# (plugins/builtin), hard-linked as bin/plugins/NAME: run under a name, it is that plugin.
PLUGINS    := $(filter-out builtin,$(patsubst plugins/%/main.go,%,$(wildcard plugins/*/main.go)))

# Pinned tool versions.
TOOLS            := $(CURDIR)/.tools/bin
PROTOC_GEN_GO    := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GRPC  := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
STATICCHECK      := honnef.co/go/tools/cmd/staticcheck@v0.6.1
PROTOC_VERSION   := 3.21.12
PROTO_SRC        := plugins/sdk/proto/sitelink/plugin/v1/plugin.proto

TEST_TIMEOUT ?= 40m

.PHONY: all build test test-unit demo bench lint proto proto-check deps tools clean

all: build

build:
	@mkdir -p bin/plugins
	$(GOBUILD) -o bin/sitelinkd ./daemon/cmd/sitelinkd
	$(GOBUILD) -o bin/sitelinkctl ./daemon/cmd/sitelinkctl
	$(GOBUILD) -o bin/plugins/.builtin ./plugins/builtin
	@cd bin/plugins && for p in $(PLUGINS); do ln -f .builtin $$p || exit 1; done && rm -f .builtin && echo "bin/plugins: $(PLUGINS) (one binary, hard links)"

# deps installs the system tools the tests and the demo use (Debian or EL), only when missing.
deps:
	@testenv/install-deps.sh

tools:
	@mkdir -p $(TOOLS)
	@test -x $(TOOLS)/protoc-gen-go      || GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO)
	@test -x $(TOOLS)/protoc-gen-go-grpc || GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GRPC)
	@test -x $(TOOLS)/staticcheck        || GOBIN=$(TOOLS) $(GO) install $(STATICCHECK)

test: deps build tools proto-check
	$(GO) vet ./...
	@# The failures are repeated at the end, where a CI log's tail shows them.
	@set -o pipefail; $(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./... 2>&1 | tee .test.log; rc=$$?; \
	if [ $$rc -ne 0 ]; then echo; echo "=== failures (full log: .test.log)"; \
	grep -E -A25 -e '^\s*--- FAIL' -e '^panic:' -e '^FAIL\s' .test.log | grep -v '"@level"' | cut -c1-400 | head -300; fi; exit $$rc
	cd plugins/examples/hello && $(GO) vet ./... && $(GO) test -count=1 ./...

# test-unit runs what needs neither root nor tools.
test-unit:
	$(GO) test -count=1 -short ./...

demo: deps build
	$(GO) run ./testenv/demo -bin $(CURDIR)/bin

bench: deps build
	$(GO) test -run '^$$' -bench . -benchtime 3x ./daemon/... ./plugins/... ./systemd/...
	@for s in testenv/bench/*/run.sh; do [ -x "$$s" ] && { echo "== $$s"; "$$s" || exit 1; }; done; true

lint: tools
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(TOOLS)/staticcheck ./...
	cd plugins/examples/hello && $(GO) vet ./... && $(TOOLS)/staticcheck ./...

proto: tools
	@protoc --version | grep -q '$(PROTOC_VERSION)' || { echo "need protoc $(PROTOC_VERSION) (Debian 12: apt-get install protobuf-compiler)"; exit 1; }
	PATH=$(TOOLS):$$PATH protoc -I plugins/sdk/proto \
		--go_out=. --go_opt=module=github.com/sitelink/sitelink \
		--go-grpc_out=. --go-grpc_opt=module=github.com/sitelink/sitelink \
		$(PROTO_SRC)

# proto-check fails when the committed generated code is stale.
proto-check: proto
	@git diff --exit-code -- plugins/sdk/pluginpb || { echo "generated gRPC code is stale: run make proto and commit"; exit 1; }

clean:
	rm -rf bin dist .tools

# --- Packaging (issue 9): RPMs for CentOS 7 / EL8 / EL9 and a yum repository -----------
#   make rpm    dist/sitelink-RPM_VERSION-RPM_RELEASE.elN.x86_64.rpm for N in EL_VERSIONS
#   make repo   dist/repo/elN/ (createrepo_c) from the RPMs in dist/, .repo files, install.sh;
#               REPO_URL=https://host/path sets the .repo files' baseurl
# RPM_VERSION is VERSION's leading X.Y[.Z...] (from a tag, git describe), else 0.1.0.
RPM_VERSION ?= $(or $(shell echo '$(VERSION)' | sed -n 's/^\([0-9][0-9]*\(\.[0-9][0-9]*\)\{1,\}\).*/\1/p'),0.1.0)
RPM_RELEASE ?= 1
EL_VERSIONS ?= 7 8 9
REPO_URL    ?=

.PHONY: rpm repo

rpm: build
	packaging/build-rpm.sh -b bin -o dist -v $(RPM_VERSION) -r $(RPM_RELEASE) -e "$(EL_VERSIONS)"
	packaging/check-rpm.sh $(foreach el,$(EL_VERSIONS),dist/sitelink-$(RPM_VERSION)-$(RPM_RELEASE).el$(el).x86_64.rpm)

repo:
	packaging/make-repo.sh -d dist $(if $(REPO_URL),-u $(REPO_URL))
