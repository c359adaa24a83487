"""demos/bench/bench_gpu.py: the published-size timing script, run here at CPU sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from worldmodel.models.flops import predictor_flops
from worldmodel.models.predictor import PREDICTOR_PRESETS
from worldmodel.world_model import random_world_model

SCRIPT = Path(__file__).resolve().parents[2] / "demos" / "bench" / "bench_gpu.py"


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("horizon", [1, 3])
def test_analytic_flops_match_torch_flop_counter(horizon):
    wm = random_world_model("vit_tiny_cpu", "tiny", "cpu", torch.float32, 0)
    cfg = wm.predictor.cfg
    z = torch.randn(1, cfg.tokens_per_frame, cfg.encoder_dim)
    actions = torch.zeros(1, 16, horizon, 7)
    with FlopCounterMode(display=False) as counter:
        wm.rollout(z, torch.zeros(1, 7), actions)
    analytic = predictor_flops(cfg, samples=16, iterations=1, horizon=horizon)
    assert counter.get_total_flops() == pytest.approx(analytic, rel=0.03)
    assert predictor_flops(cfg, 16, 4, horizon) == pytest.approx(4 * analytic)


def test_published_budget_flops():
    """What the GPU target asks of the hardware: ~1.3 PFLOP per action at 800 x 10."""
    flops = predictor_flops(PREDICTOR_PRESETS["vjepa2_ac"], 800, 10, 1)
    assert 1.2e15 < flops < 1.4e15


def test_cpu_smoke_run_writes_both_methods(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_script(*[
        "--device", "cpu", "--dtype", "bf16", "--encoder", "vit_tiny_cpu", "--predictor",
        "tiny", "--samples", "24", "--iterations", "2", "--actions", "2", "--warmup", "0",
        "--threads", "1", "--out", str(out),
    ])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    assert [r["method"] for r in rows] == ["cem", "reference"]
    for r in rows:
        assert r["dtype"] == "bf16" and r["samples"] == 24 and r["tokens_per_frame"] == 16
        assert 0 < r["s_per_action_median"] <= r["s_per_action_p90"]
        assert r["plan_s_median"] <= r["s_per_action_p90"]
        assert r["predictor_tflops"] > 0
    assert rows[0]["encode_s_median"] > 0 and rows[1]["encode_s_median"] is None
    assert "| cem |" in proc.stdout


def test_mismatched_presets_and_bad_args_are_refused():
    with pytest.raises(ValueError, match="predictor tiny expects"):
        random_world_model("vit_nano_cpu", "tiny", "cpu", torch.float32, 0)
    with pytest.raises(ValueError, match="unknown predictor preset"):
        random_world_model("vit_tiny_cpu", "huge", "cpu", torch.float32, 0)
    proc = run_script("--samples", "0")
    assert proc.returncode == 2 and "--samples" in proc.stderr
