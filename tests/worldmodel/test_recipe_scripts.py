"""demos/recipes/recipe_cpu.sh and demos/experiments/motion_weight_study.sh end to end at toy sizes (slow)."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bash(script: str, env: dict[str, str]) -> str:
    """Run a demos/ script with the venv's console scripts first on PATH (make test-slow runs
    pytest as .venv/bin/python, without activating the venv)."""
    path = f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"
    full = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "PATH": path, **env}
    done = subprocess.run(
        ["bash", str(ROOT / "demos" / script)], env=full, capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_recipe_then_motion_weight_study_at_toy_sizes(tmp_path):
    run, study = tmp_path / "run", tmp_path / "study"
    out = _bash(
        "recipes/recipe_cpu.sh",
        {"RUN": str(run), "EPISODES": "6", "PRETRAIN_STEPS": "3", "TRAIN_STEPS": "6",
         "DECAY_STEPS": "2", "DEMOS": "4", "TASK_DEMOS": "2", "POLICY_STEPS": "3",
         "POLICY_ENSEMBLE": "2", "PROPOSAL_STEPS": "3", "EXPORT": ""},
    )  # fmt: skip
    assert "== recipe: finished" in out
    meta = json.loads((run / "predictor" / "world_model" / "world_model.json").read_text())
    assert meta["views"] == ["exterior", "wrist"]
    policy = run / "predictor" / "world_model" / "policy"
    assert (policy / "ensemble.json").is_file() and not (policy / "policy.json").exists()
    assert all((policy / "members" / k / "policy.safetensors").is_file() for k in ("0", "1"))
    assert (policy / "proposal" / "policy.json").is_file()
    for task in ("reach", "reach_with_object", "grasp"):  # the policy's other tasks
        assert len(list((run / f"demos_{task}_features").glob("ep_*.npy"))) == 2
    out = _bash(
        "experiments/motion_weight_study.sh",
        {"RUN": str(run), "OUT": str(study), "WEIGHTS": "0 5", "STEPS": "4",
         "DEV_WEIGHTS": "5", "DEV_EPISODES": "1"},
    )  # fmt: skip
    assert out.count("wrist: gain mean") == 3  # the recipe model and both fine-tunes
    for w in ("0", "5"):
        rows = list(csv.DictReader((study / f"mw{w}" / "eval_log.csv").open()))
        assert rows[-1]["step"] == "4"
    tasks = [json.loads(line)["result"]["task"]
             for line in (study / "dev_mw5" / "episodes.jsonl").read_text().splitlines()]  # fmt: skip
    assert sorted(tasks) == ["grasp", "pick_place", "reach"]  # 2 workers: any order
    assert (study / "dev_recipe" / "results.md").is_file()  # the recipe model's row too
    assert not (study / "dev_mw0").exists()


@pytest.mark.slow
def test_full_recipe_at_toy_sizes_resumes_and_records_stage_times(tmp_path):
    run = tmp_path / "full"
    env = {"RUN": str(run), "EPISODES": "4", "IMAGE_SIZE": "64", "PRETRAIN_STEPS": "2",
           "PRETRAIN_CKPT": "1", "TRAIN_STEPS": "3", "DECAY_STEPS": "1", "TRAIN_CKPT": "1",
           "ROLLOUT_STEPS": "2", "DEMOS": "4", "POLICY_STEPS": "3", "POLICY_ENSEMBLE": "1", "PROPOSAL_STEPS": "3", "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}  # fmt: skip
    assert "== recipe-full: finished" in _bash("recipes/recipe_full.sh", env)
    meta = json.loads((run / "predictor" / "world_model" / "world_model.json").read_text())
    assert meta["views"] == ["exterior", "wrist"] and meta["predictor"]["width"] == 256
    times = (run / "stage_times.txt").read_text()
    assert all(re.fullmatch(r"\S+ \d+ s \(1 run\)", line) for line in times.splitlines())
    stages = [line.split()[0] for line in times.splitlines()]
    assert stages == [
        "collect",
        "pretrain",
        "cache",
        "train",
        "demos",
        "demos-cache",
        "policy",
        "proposal",
    ]
    assert (run / "predictor" / "world_model" / "policy" / "policy.json").is_file()
    assert (run / "predictor" / "world_model" / "policy" / "proposal" / "policy.json").is_file()
    # An interrupted attempt of the proposal stage: its seconds count toward the stage's total.
    (run / "stage_times.txt").write_text(times.replace(times.splitlines()[-1] + "\n", ""))
    (run / "stage_clock" / "proposal.1").write_text("1000\n")
    assert "== recipe-full: finished" in _bash("recipes/recipe_full.sh", env)  # a rerun: no-op
    rerun = (run / "stage_times.txt").read_text().splitlines()
    assert rerun[:-1] == times.splitlines()[:-1]  # recorded stages are not timed again
    proposal = re.fullmatch(r"proposal (\d+) s \(3 runs\)", rerun[-1])  # first run, 1000, rerun
    assert proposal and int(proposal[1]) >= 1000
