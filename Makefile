# The whole set-up: `make lab` (tutorial) and `make test` (test suite).
# Both create .venv at the repository root when it is missing and install the package into it, editable.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Extra arguments for JupyterLab or pytest, e.g. `make lab LAB_ARGS="--port 9999"`.
LAB_ARGS ?=
PYTEST_ARGS ?=
# JupyterLab refuses to start as root unless told that it is on purpose.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test clean browser

$(BIN)/python:
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v >= (3, 11) else f"retokviz needs Python 3.11 or newer; $(PYTHON) is {v.major}.{v.minor}. Run make with PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)

# A stamp per extra: reinstall only when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	@echo "Installing retokviz[$*] into $(VENV) (the first time brings PyTorch from PyPI: a few minutes)"
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	@touch $@

lab: $(VENV)/.installed-notebooks
	@echo "Starting JupyterLab on notebooks/ - open the http://127.0.0.1:... URL printed below (Ctrl-C to stop)."
	$(BIN)/jupyter lab --notebook-dir=notebooks --no-browser --ip=127.0.0.1 $(ROOT_FLAG) $(LAB_ARGS)

# The notebooks run in quick mode under test unless RETOKVIZ_QUICK=0 is given (full mode trains and sweeps).
test: $(VENV)/.installed-dev browser
	RETOKVIZ_QUICK=$${RETOKVIZ_QUICK:-1} $(BIN)/python -m pytest $(PYTEST_ARGS)

# The browser test drives Debian's chromium through Playwright (Playwright's own browser download is not reachable
# here). Installed with apt-get where we are root; elsewhere the browser test is skipped and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing chromium for the browser test (apt-get)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
	      || echo "Could not install chromium: the browser test will be skipped"; \
	  else echo "No chromium and not root: the browser test will be skipped (apt-get install chromium to run it)"; fi; }

clean:
	rm -rf $(VENV) build *.egg-info
