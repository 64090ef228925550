# stockd — build, run, test. Every target works on a fresh machine with Go.
GO        ?= go
GOBIN     ?= $(shell $(GO) env GOPATH)/bin
DATA_DIR  ?= ./data
GRPC_ADDR ?= 127.0.0.1:7400

PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GRPC_GATEWAY_VERSION       := v2.33.0
PROTOS := $(shell find proto -name '*.proto')
GATEWAY_CONFIG := proto/stockd/v1/gateway.yaml
OPENAPI_CONFIG := proto/stockd/v1/openapi.yaml

IMAGE   ?= stockd:dev
# Compose v2 (a docker plugin) if present, else the standalone docker-compose v1.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo docker compose || echo docker-compose)
COMPOSE_FILE := deploy/compose.yaml

.PHONY: all build run test test-short bench proto tools vet clean image cluster-up cluster-down

all: build

build:
	$(GO) build -o bin/stockd ./cmd/stockd
	$(GO) build -o bin/stockctl ./cmd/stockctl

## run: start a single node with its data in ./data
run: build
	./bin/stockd --data-dir $(DATA_DIR) --grpc-addr $(GRPC_ADDR)

## test: vet plus every test with the race detector
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...

test-short:
	$(GO) test -count=1 -short ./...

## bench: the stockbench suite (about 3 minutes) on spawned 1- and 3-node clusters;
## writes bench/RESULTS.md (targets met or not, every run's table) and the plots beside it
bench:
	$(GO) build -o bin/stockd ./cmd/stockd
	$(GO) run ./cmd/stockbench suite --out bench/ --stockd bin/stockd

## bench-go: the Go micro- and process benchmarks of store and cmd/stockd (long)
.PHONY: bench-go
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count=5 ./store/
	$(GO) test -run '^$$' -bench . -benchtime 3s -count=2 -timeout 30m ./cmd/stockd/

tools:
	GOBIN=$(GOBIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(GOBIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	GOBIN=$(GOBIN) $(GO) install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$(GRPC_GATEWAY_VERSION)
	GOBIN=$(GOBIN) $(GO) install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$(GRPC_GATEWAY_VERSION)
	@command -v protoc >/dev/null || { echo "protoc missing: apt-get install -y protobuf-compiler"; exit 1; }

## proto: regenerate api/ from proto/
proto: tools
	PATH=$(GOBIN):$$PATH protoc -I proto -I /usr/include \
		--go_out=. --go_opt=module=github.com/stockd/stockd \
		--go-grpc_out=. --go-grpc_opt=module=github.com/stockd/stockd \
		$(PROTOS)
	@# The HTTP/JSON gateway of the Inventory service: routes come from
	@# $(GATEWAY_CONFIG), not from google.api.http options, which Debian's protoc
	@# cannot import. The OpenAPI file uses proto field names, as the gateway's
	@# JSON does.
	mkdir -p api/openapi
	PATH=$(GOBIN):$$PATH protoc -I proto -I /usr/include \
		--grpc-gateway_out=. \
		--grpc-gateway_opt=module=github.com/stockd/stockd,grpc_api_configuration=$(GATEWAY_CONFIG) \
		--openapiv2_out=api/openapi \
		--openapiv2_opt=grpc_api_configuration=$(GATEWAY_CONFIG),openapi_configuration=$(OPENAPI_CONFIG),allow_merge=true,merge_file_name=inventory,json_names_for_fields=false,preserve_rpc_order=true,output_format=json \
		proto/stockd/v1/inventory.proto

## chaos: the fault harness (bench/chaos), faults drawn at random for
## CHAOS_DURATION (default 10m); CHAOS_SEED replays a run, CHAOS_NEMESES=kill-all,membership
## narrows it, CHAOS_NODES=5 runs 5 nodes; node logs and the run's history.json stay in
## CHAOS_OUT (default /tmp/stockd-chaos)
.PHONY: chaos
chaos:
	mkdir -p $(or $(CHAOS_OUT),/tmp/stockd-chaos)
	STOCKD_CHAOS_DURATION=$(or $(CHAOS_DURATION),10m) STOCKD_CHAOS_SEED=$(CHAOS_SEED) STOCKD_CHAOS_NEMESES=$(CHAOS_NEMESES) STOCKD_CHAOS_NODES=$(CHAOS_NODES) \
		$(GO) test -race -count=1 -v -timeout 0 -run '^TestChaos$$' -artifacts -outputdir $(or $(CHAOS_OUT),/tmp/stockd-chaos) ./bench/chaos/

## image: a static linux binary in a FROM scratch image (no image is pulled)
image:
	CGO_ENABLED=0 GOOS=linux $(GO) build -trimpath -o bin/stockd-linux ./cmd/stockd
	docker build -t $(IMAGE) .

## cluster-up: three nodes on 127.0.0.1:7400, :7410 and :7420 (deploy/compose.yaml)
cluster-up: image
	STOCKD_IMAGE=$(IMAGE) $(COMPOSE) -f $(COMPOSE_FILE) up -d

## cluster-down: stop the compose cluster and delete its volumes
cluster-down:
	STOCKD_IMAGE=$(IMAGE) $(COMPOSE) -f $(COMPOSE_FILE) down -v

vet:
	$(GO) vet ./...

clean:
	rm -rf bin
