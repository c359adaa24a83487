"""planning/harness/diagnostics/probe_encoder.py end to end on a tiny synthetic dataset."""

from __future__ import annotations

import re
import sys

import torch

from planning.harness.diagnostics import probe_encoder
from worldmodel.data.synthetic import write_synthetic_dataset
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import ENCODER_PRESETS, VisionTransformer


def test_probe_reports_ee_gripper_and_collapse_check(tmp_path, monkeypatch, capsys):
    write_synthetic_dataset(tmp_path / "ds", num_episodes=6, lengths=10, image_size=32, seed=0)
    torch.manual_seed(0)
    FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"])).save(tmp_path / "enc")
    mod = probe_encoder
    argv = ["probe", "--data", str(tmp_path / "ds"), "--encoder", str(tmp_path / "enc")]
    monkeypatch.setattr(sys, "argv", [*argv, "--grid", "2", "--alpha", "10"])
    mod.main()
    out = capsys.readouterr().out
    for name in ("ours", "random"):
        line = next(ln for ln in out.splitlines() if ln.startswith(name))
        m = re.search(r"ee_xyz=(-?[\d.]+) .* gripper=(-?[\d.]+|nan) ", line)
        assert m, line
        assert float(m.group(1)) <= 1.0
        assert "feature std per dim" in line
