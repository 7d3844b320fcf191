# Quick start: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOME_DIR ?= .
SHARED_EVAL ?= ../shared/eval

.PHONY: demo test bench lint clean

# torch is pinned first: with 2.13.0 (CPU wheel) in place, `torch>=2.4` is satisfied and pip never
# pulls the multi-GB CUDA build from the index (docs/architecture.md, "Installing").
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[all]"
	touch $@

# Build -> sweep -> fit -> plan -> how to open the dashboard (docs/tutorial.md walks through it).
demo: $(VENV)/.installed
	PY=$(PY) SHARED_EVAL=$(SHARED_EVAL) scripts/demo.sh $(HOME_DIR)

test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	$(PY) -m bench --eval $(SHARED_EVAL)

lint: $(VENV)/.installed
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) data/ runs/ metrics/pipeline metrics/trainer metrics/planner .pytest_cache
