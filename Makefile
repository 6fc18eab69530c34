# The two commands a new user needs (see README.md), plus a few conveniences.
PRESET ?= release
BUILD_DIR := build/$(PRESET)
DATA_DIR ?= ./data
LISTEN ?= 127.0.0.1:8080

.PHONY: run test build configure bootstrap web-test-deps bench bench-engine bench-campaigns bench-web bench-overload clean format-check config-doc fuzz

run: build
	$(BUILD_DIR)/src/app/fairway serve --data-dir $(DATA_DIR) --listen $(LISTEN)

test: build format-check web-test-deps
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j 2

build: configure
	cmake --build $(BUILD_DIR) -j 2

configure: bootstrap
	@test -f $(BUILD_DIR)/build.ninja || cmake --preset $(PRESET)

bootstrap:
	@scripts/bootstrap

# The npm packages the web tests load in headless Chromium (tests/web).
web-test-deps: bootstrap
	@scripts/web-test-deps

bench: build
	bench/run_ingest.sh

# The processing engine's scenarios (bench/README.md); the rss scenario preloads 50M activities.
bench-engine: build
	$(BUILD_DIR)/bench/fairway_engine_bench throughput
	$(BUILD_DIR)/bench/fairway_engine_bench fairness --events 6000000 --seconds 2
	$(BUILD_DIR)/bench/fairway_engine_bench noisy
	$(BUILD_DIR)/bench/fairway_engine_bench stragglers
	$(BUILD_DIR)/bench/fairway_engine_bench rss --events 50000000 --tenants 10 --leads 100000

# The campaign processor's scenarios (bench/README.md): t0000 with 5,000 campaigns and 1,000
# tenants with 10 each; on 2 cores match takes about 70 s, steps and latency 30-40 s each.
bench-campaigns: build
	$(BUILD_DIR)/bench/fairway_campaign_bench match
	$(BUILD_DIR)/bench/fairway_campaign_bench steps
	$(BUILD_DIR)/bench/fairway_campaign_bench latency

# The web-shaped load (bench/README.md, "Web benchmark"): about two minutes.
bench-web: build
	$(BUILD_DIR)/bench/fairway_web_bench throughput
	$(BUILD_DIR)/bench/fairway_web_bench latency
	$(BUILD_DIR)/bench/fairway_web_bench cost

# One tenant floods with 1,200 connections while another sends 50 requests/s (bench/README.md).
bench-overload: build
	SKIP_BUILD=1 bench/run_overload.sh

# The libFuzzer targets (docs/fuzzing.md), FUZZ_SECONDS each; new corpus entries and crashing
# inputs are kept in build/fuzz/work. `make test` runs them briefly (the fuzz_smoke test).
FUZZ_SECONDS ?= 120
fuzz: bootstrap
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_WORK=build/fuzz/work scripts/fuzz

config-doc: build
	$(BUILD_DIR)/src/app/fairway config-reference > docs/config.md

# Fails when a C++ file differs from clang-format's output (.clang-format: Google, 100 columns).
format-check: bootstrap
	@git ls-files '*.cpp' '*.h' | xargs clang-format --dry-run --Werror

clean:
	rm -rf build
