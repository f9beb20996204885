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

.PHONY: lab test clean

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

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
