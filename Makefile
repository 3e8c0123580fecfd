# Set-up and everyday commands. `make test` and `make run` create .venv and install
# everything on a fresh machine with only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
ROOT   ?= .
# torch first, pinned: a loose requirement would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

# Debian's systemd package brings systemd-analyze, which the tests use to verify the unit.
INSTALL_SYSTEMD = (if [ "$$(id -u)" = 0 ]; then S=; else S="sudo -n"; fi; \
	$$S apt-get update -qq && $$S env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null)

.PHONY: install test test-fast lint run bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v systemd-analyze >/dev/null 2>&1 || $(INSTALL_SYSTEMD) \
		|| echo "note: systemd-analyze unavailable: the unit check will be skipped"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Everything (CI): -rs prints why a test was skipped (e.g. the full corpora are not beside the checkout).
test: $(STAMP)
	$(PY) -m pytest -q -rs -p no:cacheprovider

# The contributor's loop: no real model, no subprocess or daemon, nothing that takes minutes.
# Its temporary files go to tmpfs where there is room (FAST_TMP; removed afterwards): on a
# disk, SQLite's fsyncs are most of the loop's time (66 s -> 21 s here). `make test` keeps
# them on disk, as CI does.
FAST_TMP ?= $(shell avail=$$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $$4}'); \
	if [ -w /dev/shm ] && [ "$${avail:-0}" -gt 1048576 ]; then echo /dev/shm; else echo "$${TMPDIR:-/tmp}"; fi)
test-fast: $(STAMP)
	@start=$$(date +%s); base=$$(mktemp -d -p "$(FAST_TMP)" indexer-test-fast.XXXXXX); \
	$(PY) -m pytest -q -rs -p no:cacheprovider --basetemp="$$base" -m "not model and not process and not slow"; rc=$$?; \
	rm -rf "$$base"; echo "make test-fast: $$(( $$(date +%s) - start )) s wall time (temporary files in $(FAST_TMP))"; exit $$rc

# ruff (rules and per-path exceptions in pyproject.toml) and mypy (strict in indexer/storage).
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

# The main job: the daemon in the foreground, watching ROOT (Ctrl-C stops it).
run: $(STAMP)
	$(VENV)/bin/indexer daemon --root "$(ROOT)"

bench: $(STAMP)
	$(PY) bench/bench_schema.py
	$(PY) bench/bench_sync.py
	$(PY) bench/bench_search.py
	$(PY) bench/bench_embed.py
	$(PY) bench/bench_mcp.py
	$(PY) bench/bench_first_search.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
