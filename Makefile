# Set-up and everyday commands. `make test` and `make run` create .venv and install
# everything on a fresh machine with only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
ROOT   ?= .
# torch first, pinned: a loose requirement would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: install test test-fast run bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# The main job. Until the daemon lands: a one-shot sync of ROOT, then the status.
run: $(STAMP)
	$(VENV)/bin/indexer reindex --root "$(ROOT)"
	$(VENV)/bin/indexer status

bench: $(STAMP)
	$(PY) bench/bench_schema.py
	$(PY) bench/bench_sync.py
	$(PY) bench/bench_search.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
