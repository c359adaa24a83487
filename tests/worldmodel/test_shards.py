"""wm-import and wm-cache under torchrun: 2 CPU processes write what 1 process writes (#23)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import torch

from worldmodel.data.importers import fixtures as fx
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import ENCODER_PRESETS, VisionTransformer


def _run(module: str, *args: str, nproc: int, port: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if nproc == 1:
        cmd = [sys.executable, "-m", module, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(port), "-m", module, *args]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-3000:]


def test_two_processes_import_and_cache_what_one_process_does(tmp_path):
    eps = fx.make_episodes(5, length=[10, 12, 9, 11, 10], state_dim=6, seed=3)
    src = fx.write_lerobot_v21(tmp_path / "src", eps, fps=30)
    torch.manual_seed(0)
    FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"])).save(tmp_path / "enc")
    for n, port in ((1, 0), (2, 29541)):
        data, cache = tmp_path / f"data{n}", tmp_path / f"cache{n}"
        _run("worldmodel.data.importers.cli", f"src={src}", f"out_dir={data}", "fps=15",
             "image_size=64", "progress=false", nproc=n, port=port)  # fmt: skip
        _run("worldmodel.training.cache", f"data_root={data}", f"encoder_dir={tmp_path / 'enc'}",
             f"cache_dir={cache}", nproc=n, port=port + 1)  # fmt: skip
    summary = [
        json.loads((tmp_path / f"data{n}" / "import_summary.json").read_text()) for n in (1, 2)
    ]
    assert summary[0]["imported"] == summary[1]["imported"] == [0, 1, 2, 3, 4]
    assert summary[0]["frames"] == summary[1]["frames"]
    meta = [json.loads((tmp_path / f"data{n}" / "meta.json").read_text()) for n in (1, 2)]
    for m in meta:
        m["extra"]["import"]["config"].pop("out_dir")  # data1 vs data2: the one difference
    assert meta[0] == meta[1]
    for ep in range(5):
        name = f"ep_{ep:06d}"
        a = np.load(tmp_path / "data1" / "episodes" / name / "steps.npz")
        b = np.load(tmp_path / "data2" / "episodes" / name / "steps.npz")
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
        fa = np.load(tmp_path / "cache1" / f"{name}.npy")
        fb = np.load(tmp_path / "cache2" / f"{name}.npy")
        np.testing.assert_array_equal(fa, fb)
    ca = json.loads((tmp_path / "cache1" / "meta.json").read_text())
    cb = json.loads((tmp_path / "cache2" / "meta.json").read_text())
    ca["source"].pop("data_root"), cb["source"].pop("data_root")
    assert ca == cb and ca["complete"]


def test_a_refusal_on_rank_0_stops_every_rank(tmp_path):
    """Rank 0 refuses (out_dir holds another import); rank 1 must not wait at a barrier until
    gloo's timeout (second review of this session)."""
    eps = fx.make_episodes(2, length=8, state_dim=6, seed=4)
    a = fx.write_lerobot_v21(tmp_path / "a", eps, fps=30)
    b = fx.write_lerobot_v21(tmp_path / "b", eps, fps=30)
    out = tmp_path / "data"
    _run("worldmodel.data.importers.cli", f"src={a}", f"out_dir={out}", "image_size=64",
         "progress=false", nproc=1, port=0)  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29547", "-m", "worldmodel.data.importers.cli", f"src={b}",
           f"out_dir={out}", "image_size=64", "progress=false"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode != 0
    assert "holds another import" in done.stderr
