# Set-up and everyday commands. `make test` and `make run` create .venv and install
# everything on a fresh machine with only Python 3.11+ and make.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
ROOT   ?= .
# torch first, pinned: a loose requirement would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

# Debian packages the tests use, installed when missing (as root, or with sudo without a password):
# systemd brings systemd-analyze, which verifies the unit; pgbouncer is put in front of the suite's
# PostgreSQL in transaction pooling mode (tests/test_pgbouncer.py). Where apt is unavailable the
# install goes on and those tests skip, saying why.
APT_INSTALL = (if [ "$$(id -u)" = 0 ]; then S=; else S="sudo -n"; fi; \
	$$S apt-get update -qq && $$S env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(1) >/dev/null)
INSTALL_SYSTEMD = $(call APT_INSTALL,systemd)
INSTALL_PGBOUNCER = $(call APT_INSTALL,pgbouncer)

# The exact versions the suite last passed with (`make lock` writes it; `make install` obeys it).
LOCK   ?= constraints.txt
# The extras installed with the project (and locked): add one here when the suite needs it.
EXTRAS ?= dev
# Scratch environments of `make lock` and `make test-latest`, beside .venv.
LOCK_VENV   ?= .venv-lock
LATEST_VENV ?= .venv-latest

.PHONY: install test test-fast test-latest lock lint run bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile $(LOCK)
	@command -v systemd-analyze >/dev/null 2>&1 || $(INSTALL_SYSTEMD) \
		|| echo "note: systemd-analyze unavailable: the unit check will be skipped"
	@command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || $(INSTALL_PGBOUNCER) \
		|| echo "note: pgbouncer unavailable: the PgBouncer tests will be skipped"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -c $(LOCK) -e '.[$(EXTRAS)]'
	touch $(STAMP)

# Rewrite $(LOCK) from a fresh resolve: a new venv, torch first (pinned, as above), then the
# project and its dev tools at the newest versions pyproject.toml's ranges allow; `pip freeze`
# of that venv, without pip and the project itself (torch without its local label, so that
# torch==2.13.0 matches a +cpu build as well as another). Run it after changing a dependency in
# pyproject.toml, then `make test` and commit both files. The file is replaced only when the
# install succeeded, so a failed resolve leaves the old lock in place.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install -q --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install -q $(TORCH)
	echo '$(TORCH)' > $(LOCK_VENV)/torch.txt
	$(LOCK_VENV)/bin/python -m pip install -q -c $(LOCK_VENV)/torch.txt -e '.[$(EXTRAS)]'
	{ echo "# Written by \`make lock\` from a fresh resolve of pyproject.toml (torch first: $(TORCH));"; \
	  echo "# \`make install\` installs exactly these. Python $$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.python_version())'), $$(uname -sm)."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable --exclude pip --exclude indexer \
	  | sed 's/^\(torch==[^+]*\)+.*/\1/'; } > $(LOCK).new
	grep -q '^torch==' $(LOCK).new && grep -q '^watchdog==' $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf $(LOCK_VENV)
	@echo "make lock: wrote $(LOCK) ($$(grep -vc '^#' $(LOCK)) packages); now run make test and commit it"

# The whole suite against the newest versions the ranges allow (torch still $(TORCH)), in its
# own venv: a release that breaks us is seen here before a user installs it. A fresh venv
# resolves the newest releases by itself; torch is held at $(TORCH) by a constraint (an
# --upgrade once pulled torch 2.14 and its CUDA wheels, gigabytes). Prints how the
# resolve differs from $(LOCK) first. Run it before a release, after `make lock`, and weekly.
# TEST_ARGS narrows the run (e.g. TEST_ARGS=tests/test_daemon_parts.py).
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install -q --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install -q $(TORCH)
	echo '$(TORCH)' > $(LATEST_VENV)/torch.txt
	$(LATEST_VENV)/bin/python -m pip install -q -c $(LATEST_VENV)/torch.txt -e '.[$(EXTRAS)]'
	@$(LATEST_VENV)/bin/python -m pip freeze --all --exclude-editable --exclude pip --exclude indexer \
		| sed 's/^\(torch==[^+]*\)+.*/\1/' > $(LATEST_VENV)/resolved.txt; grep -v '^#' $(LOCK) | diff - $(LATEST_VENV)/resolved.txt \
		| sed -n 's/^> /not in $(LOCK): /p'; true
	$(LATEST_VENV)/bin/python -m pytest -q -rs -p no:cacheprovider $(TEST_ARGS)

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
	rm -rf $(VENV) $(LOCK_VENV) $(LATEST_VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
