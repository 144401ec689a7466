# Wrapper around CMake. `make` builds, `make test` runs the whole suite,
# `make demo` runs hypura on a built-in synthetic model. `deps` installs the
# Debian packages the build and the tests need (as root; otherwise it prints
# the command to run).

BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_TSAN ?= build-tsan
BUILD_FUZZ ?= build-fuzz
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

ifeq ($(CI),true)
CMAKE_ARGS += -DHY_FATAL_WARNINGS=ON
endif

.PHONY: all build deps demo test test-deps test-main test-asan test-tsan test-fuzz clean format

all: build

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

deps:
	@sh scripts/deps.sh

demo: deps
	@$(MAKE) --no-print-directory build
	@sh scripts/demo.sh $(BUILD)

test: deps
	@$(MAKE) --no-print-directory test-main
ifeq ($(CI),true)
	@$(MAKE) --no-print-directory test-asan
	@$(MAKE) --no-print-directory test-tsan
	@$(MAKE) --no-print-directory test-fuzz
endif

test-main: build test-deps
	@cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# The npm clients the server test drives (tests/server/package.json, exact
# versions), installed into $(BUILD)/server-node when missing or changed.
test-deps:
	@mkdir -p $(BUILD)/server-node
	@if ! cmp -s tests/server/package.json $(BUILD)/server-node/package.json || \
	    [ ! -d $(BUILD)/server-node/node_modules ]; then \
	  cp tests/server/package.json $(BUILD)/server-node/package.json && \
	  (cd $(BUILD)/server-node && npm install --no-audit --no-fund --loglevel=error) || \
	  echo "test-deps: npm install failed: the server client test will be skipped"; \
	fi

# Unit tests under AddressSanitizer + UndefinedBehaviorSanitizer (CUDA off).
test-asan:
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DHY_SANITIZE=ON -DHY_CUDA=OFF $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD_ASAN) -j$(JOBS)
	@cd $(BUILD_ASAN) && ctest --output-on-failure -j$(JOBS) -L unit

# Unit tests under ThreadSanitizer (CUDA off): the thread pool, its started
# passes and every multithreaded kernel.
test-tsan:
	@cmake -S . -B $(BUILD_TSAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHY_TSAN=ON -DHY_CUDA=OFF $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD_TSAN) -j$(JOBS)
	@cd $(BUILD_TSAN) && TSAN_OPTIONS=halt_on_error=1 ctest --output-on-failure -j$(JOBS) -L unit

# A short libFuzzer run over the GGUF parser (skipped without clang).
test-fuzz:
	@if command -v clang >/dev/null 2>&1; then \
	  CC=clang cmake -S . -B $(BUILD_FUZZ) -DCMAKE_BUILD_TYPE=Debug -DHY_FUZZ=ON -DHY_CUDA=OFF $(CMAKE_ARGS) >/dev/null && \
	  cmake --build $(BUILD_FUZZ) -j$(JOBS) --target fuzz_gguf && \
	  cd $(BUILD_FUZZ) && ctest --output-on-failure -L fuzz; \
	else echo "test-fuzz: clang not found, skipping the fuzz run"; fi

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_TSAN) $(BUILD_FUZZ)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h' '*.cu')
