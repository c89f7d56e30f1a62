# MU Audit: `make run` starts the app, `make test` runs the whole suite. Both set up .venv first.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint bench

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@# the repository on the environment's import path: `python -m mu_core` works from any folder once activated
	$(PY) -c 'import pathlib, site; pathlib.Path(site.getsitepackages()[0], "mu_audit.pth").write_text(str(pathlib.Path.cwd()) + "\n")'
	@touch $(STAMP)

# 127.0.0.1 only unless sign-in is configured ([auth] in .streamlit/secrets.toml): see mu_core/serve.py
run: $(STAMP)
	$(PY) -m mu_core serve

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	@if [ -x /usr/bin/chromium ]; then \
		$(PY) -m pytest; \
	else \
		echo "Browser tests skipped: /usr/bin/chromium is missing (install it with: sudo apt-get install -y chromium)."; \
		$(PY) -m pytest -m "not browser"; \
	fi

bench: $(STAMP)
	$(PY) benchmarks/foundation.py
