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
	$(PY) -m pip install -q -e '.[dev,hf]'
	# openpi's client, to test our policy server against the real thing; its numpy<2 pin is
	# stale (it runs on numpy 2), hence --no-deps: its other needs come with our own.
	$(PY) -m pip install -q --no-deps openpi-client==0.1.2
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
