# The two set-up commands (README): `make quickstart` and `make test`. Both create .venv/ on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip --disable-pip-version-check -q
# Threads for benchmarks and the quickstart; tests use the default.
THREADS ?= 2

.PHONY: setup quickstart test lint bench mutants clean browser

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(PIP) install torch==2.13.0
	$(PIP) install -e '.[test]'
	touch $@

setup: $(VENV)/.installed

quickstart: setup
	OMP_NUM_THREADS=$(THREADS) $(PY) scripts/quickstart.py

# The demo page's test drives Debian's Chromium (tests/serve/test_page.py): installed here when missing and we
# are root (CI); otherwise that test fails naming the two packages to install.
browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing chromium and chromium-driver (the demo page's test)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
		fi; \
	fi

test: setup browser
	BERTFORGE_REQUIRE_SAMPLES=$${BERTFORGE_REQUIRE_SAMPLES:-1} $(PY) -m pytest -q

# Lint and format check (the rule set in pyproject.toml); CI runs it before the tests.
lint: setup
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

# One-line bugs against the tests that must catch them (tests/mutants.toml; results in tests/MUTANTS.md).
# Kept results are reused until a mutant, its module or its tests change; FRESH=1 reruns all.
mutants: setup
	$(PY) scripts/mutants.py $(if $(FRESH),--fresh)

bench: setup
	$(PIP) install -e '.[test,bench]'
	for script in benchmarks/bench_*.py; do OMP_NUM_THREADS=$(THREADS) $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .cache build src/*.egg-info
