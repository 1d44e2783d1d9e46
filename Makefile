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
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

run: install
	$(VENV)/bin/prunescope up

# Debian's Chromium for the browser tests (Playwright drives it; it cannot download its own here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: install Debian's chromium (sudo apt-get install chromium) to run the browser tests"; fi; }

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy

pytest: install browser
	$(PY) -m pytest -q -p no:cacheprovider

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
