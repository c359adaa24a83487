"""planning/harness/diagnostics/trace_episode.py: one traced episode of the shipped model, its CSV fields and plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from planning.harness.diagnostics import trace_episode

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "shipped"


def test_trace_replays_an_evaluation_instance(tmp_path):
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    mod = trace_episode
    result = mod.trace("reach", str(SHIPPED), "wm_cem", task_id=1, seed=None)
    rows = result["rows"]
    assert result["success"] and 1 <= len(rows) <= 30  # instance 1 succeeds in the README table
    assert [r["step"] for r in rows] == list(range(len(rows)))
    assert all(set(r) == set(mod.FIELDS) for r in rows)
    # reach never closes: every planned action is sent as it is (eval.yaml's filters idle)
    for r in rows:
        assert r["gripper"] < 0.5
        for k in ("dx", "dy", "dz", "dg"):
            assert r[f"sent_{k}"] == r[f"planned_{k}"]
    last = rows[-1]
    goal = np.asarray(result["info"]["subgoal_states"][0][:3])
    assert (
        np.linalg.norm([last["ee_x"] - goal[0], last["ee_y"] - goal[1], last["ee_z"] - goal[2]])
        < 0.03
    )
    out = tmp_path / "trace.png"
    mod.plot(result, "reach id1", out)
    assert out.stat().st_size > 10_000
