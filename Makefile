# Every target creates/updates the virtualenv it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
export MUJOCO_GL ?= egl

.PHONY: venv test test-slow lint format demo bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU wheel of torch (an unpinned torch would pull the CUDA build).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

test: venv
	$(PY) -m pytest -q

test-slow: venv
	$(PY) -m pytest -q -m slow

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

demo: venv
	$(VENV)/bin/wm-demo

clean:
	rm -rf outputs runs .pytest_cache
