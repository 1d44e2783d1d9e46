# Two commands do everything: `make run` (install + API, worker, embedded Redis) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: install run test lint typecheck pytest browser clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# constraints.txt pins the CPU build of torch; pyproject.toml states the supported range.
	# Everything: the API, the worker (torch, the `worker` extra), image folders, the Lightning callback, dev tools.
	$(PY) -m pip install --quiet -c constraints.txt -e '.[worker,images,lightning,dev]'
	touch $@

run: install
	$(VENV)/bin/prunescope up

# Debian's Chromium for the browser tests (Playwright drives it; it cannot download its own here) and
# docker-compose to check docker-compose.yml (no Docker engine is needed for that).
TOOLS := chromium docker-compose
browser:
	@missing=""; for t in $(TOOLS); do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note: install Debian's$$missing (sudo apt-get install$$missing) for the browser and compose tests"; fi; \
	fi

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

typecheck: install
	$(VENV)/bin/mypy

pytest: install browser
	$(PY) -m pytest -q -p no:cacheprovider

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
