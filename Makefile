# The two commands users need: `make demo` and `make test`. Each is self-sufficient on a fresh
# Debian machine with Python 3: it creates .venv, installs what it needs, then runs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
CLI    := $(VENV)/bin/otel-llm-eval
DEMO_ARGS ?=

.PHONY: demo test test-unit test-integration bundle bench system-deps demo-deps venv clean

$(VENV)/.installed-%: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[$*]'
	touch $@

venv: $(VENV)/.installed-all

# Debian's Prometheus, Alertmanager (with promtool/amtool) and Chromium back the integration tests.
# Installed only when running as root and missing; with CI=true the tests fail if they are absent.
system-deps:
	@missing=""; \
	command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 || missing="$$missing prometheus-alertmanager"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing system packages:$$missing (apt-get install -y$$missing); integration tests that need them will fail under CI=true"; \
	  fi; \
	fi

# The demo's alerts section runs Debian's Prometheus and Alertmanager: installed when running as
# root and missing; otherwise the demo says how to get them and skips that section.
demo-deps:
	@missing=""; \
	command -v prometheus >/dev/null 2>&1 || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 || missing="$$missing prometheus-alertmanager"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: $(VENV)/.installed-all demo-deps
	$(CLI) demo $(DEMO_ARGS)

test: $(VENV)/.installed-test system-deps
	$(CLI) bundle --check
	$(PY) -m pytest -q -p no:cacheprovider tests

test-unit: $(VENV)/.installed-test
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

bundle: $(VENV)/.installed-all
	$(CLI) bundle

bench: $(VENV)/.installed-test
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
