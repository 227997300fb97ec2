# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hrcam-installed
# Tests pin torch to one thread per worker; two xdist workers use the two CI cores.
PYTEST_ARGS ?= -n 2 -q

.PHONY: install test test-browser demo bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	bash .ci/install-tcmalloc
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest $(PYTEST_ARGS)

# The HTML report in headless Chromium (Debian's package; installed when missing). Without
# HRCAM_REQUIRE_BROWSER=1 the browser tests skip where Chromium is missing; here they must run.
test-browser: $(STAMP)
	bash .ci/install-browser
	HRCAM_REQUIRE_BROWSER=1 $(PY) -m pytest -q tests/viz/test_html_report.py tests/evaluation/test_compare_html.py

demo: $(STAMP)
	$(VENV)/bin/hrcam demo run --out results/demo

bench: $(STAMP)
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build dist src/*.egg-info
