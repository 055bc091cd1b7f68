# rogueflow — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: install system-deps demo demo-full test lint typecheck check bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev,pcap,spark]'
	touch $(STAMP)

install: $(STAMP)

# External tools the tests drive (nfdump reads nfcapd files). Installed when
# running as root with apt-get; otherwise those tests say what to install.
system-deps:
	@scripts/system-deps

demo: install
	$(VENV)/bin/rogueflow --workspace rogueflow-data demo --scale small

demo-full: install
	$(VENV)/bin/rogueflow --workspace rogueflow-data-full demo --scale full

test: install system-deps
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: install
	$(VENV)/bin/mypy

check: lint typecheck test

bench: install system-deps
	$(PY) benchmarks/run.py
	$(PY) benchmarks/lookups.py
	$(PY) benchmarks/bgp.py
	$(PY) benchmarks/collect.py
	$(PY) benchmarks/report.py
	$(PY) benchmarks/scale.py

docs: install
	$(VENV)/bin/rogueflow schema --markdown > docs/schema.md
	$(VENV)/bin/rogueflow settings --markdown > docs/settings.md

clean:
	rm -rf $(VENV) rogueflow-data rogueflow-data-full bench-out .pytest_cache .mypy_cache .ruff_cache
