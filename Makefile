# The two commands of the README, and the gate they share.
#   make serve   set up (.venv, database, certificate) and run web + XMPP on the embedded defaults
#   make check   set up and run the whole gate: ruff, mypy, the full test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
XMPPJS := tests/interop/xmppjs

.PHONY: setup serve check lint types test clean screenshots

setup: $(STAMP) $(XMPPJS)/node_modules chromium

# Debian's Chromium for the browser tests (Playwright drives /usr/bin/chromium; `playwright install` is never
# used). Installed when missing and apt-get can (root); otherwise those tests skip and say why.
.PHONY: chromium
chromium:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
	  || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
	  || echo "could not install chromium: the browser tests will skip"; \
	fi

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# xmpp.js for the interop tests (tests/integration/test_xmppjs.py): reinstalled when the lock file is newer.
# Without npm the step is skipped (those tests then skip for want of node, or say to run `make setup`).
$(XMPPJS)/node_modules: $(XMPPJS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  npm ci --prefix $(XMPPJS) --no-audit --no-fund && touch $@; \
	else echo "npm not found: skipping the xmpp.js interop client ($(XMPPJS))"; fi

serve: $(STAMP)
	$(PY) manage.py serve

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: setup
	$(VENV)/bin/mypy .

# On every core by default (pytest-xdist, a module per worker so that each starts its servers once);
# TEST_WORKERS=0 runs in this process, one test after another.
TEST_WORKERS ?= 2
test: setup
	$(VENV)/bin/pytest --durations=25 $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

check: lint types test

# The README's screenshots (docs/screenshots/), taken by the browser tests in Chromium.
screenshots: setup
	XMPP_SAVE_SCREENSHOTS=1 $(VENV)/bin/pytest -q tests/browser/test_sessions_live.py tests/browser/test_screenshots.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
