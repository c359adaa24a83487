# Every target creates/updates the virtualenv it needs.
VENV ?= .venv
PY := $(VENV)/bin/python
export MUJOCO_GL ?= egl

.PHONY: venv test test-slow lint format demo eval eval-speed model model-full clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU wheel of torch (an unpinned torch would pull the CUDA build).
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,hf,import]'
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

# The README's evaluation table (resumable: rerun after a kill and finished episodes are kept).
eval: venv
	$(VENV)/bin/wm-eval model=models/shipped out_dir=outputs/eval_shipped workers=2 \
		episodes=50 episodes_per_method.wm_icem=50 tasks=[reach,reach_with_object,grasp,pick_place] \
		methods=[random,oracle_cem,wm_cem,wm_icem,reference_cem,wm_flat,wm_policy,wm_pcem]

# #25's speed ratio: the published loop (reference_cem), wm_cem and wm_pcem on task ids 0-2 of
# every task, in one run on the same workers (a fresh out_dir: nothing reused), ~20 min.
eval-speed: venv
	$(VENV)/bin/wm-eval model=models/shipped out_dir=outputs/eval_speed workers=2 episodes=3 \
		tasks=[reach,reach_with_object,grasp,pick_place] methods=[reference_cem,wm_cem,wm_pcem]

# Rebuild models/shipped with the CPU recipe (collect -> pretrain -> cache -> train; resumable).
model: venv
	. $(VENV)/bin/activate && bash demos/recipes/recipe_cpu.sh

# The full recipe of #25 (up to ~8 h on 2 cores, resumable stages) into runs/full.
model-full: venv
	. $(VENV)/bin/activate && bash demos/recipes/recipe_full.sh

clean:
	rm -rf outputs runs .pytest_cache
