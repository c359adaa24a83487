"""wm-train under torchrun (2 CPU processes, gloo) and a hard kill -9 followed by a rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from worldmodel.data.synthetic import write_synthetic_dataset
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import ENCODER_PRESETS, VisionTransformer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    write_synthetic_dataset(root / "ds", num_episodes=5, lengths=8, image_size=32, seed=1)
    torch.manual_seed(0)
    FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"])).save(root / "encoder")
    return root


def _args(root, out, steps: int, **kw) -> list[str]:
    opts = dict(
        data_root=root / "ds",
        encoder_dir=root / "encoder",
        out_dir=out,
        mode="on_the_fly",
        clip_len=4,
        batch_size=4,
        max_steps=steps,
        warmup_steps=2,
        decay_steps=2,
        eval_every=100,
        eval_batches=1,
        ckpt_every=2,
        val_fraction=0.25,
        progress=False,
    )
    opts.update(kw)
    return [f"{k}={v}" for k, v in opts.items()]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}


def _losses(out) -> np.ndarray:
    return np.genfromtxt(out / "train_log.csv", delimiter=",", names=True)["loss"]


def test_two_processes_match_one(setup, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(
        [sys.executable, "-m", "worldmodel.training.train", *_args(setup, one, 6)],
        check=True,
        env=_env(),
        timeout=300,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "worldmodel.training.train",
            *_args(setup, two, 6),
        ],
        check=True,
        env=_env(),
        timeout=300,
    )
    a, b = _losses(one), _losses(two)
    assert len(a) == len(b) == 6
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-5)
    assert not np.allclose(a[0], a[-1])  # the trajectory actually moves


def test_kill9_then_rerun_resumes(setup, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "worldmodel.training.train", *_args(setup, out, 400, ckpt_every=3)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = out / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    step = torch.load(ckpt, weights_only=True)["step"]
    assert 0 < step < 400
    rerun = _args(setup, out, step + 3, ckpt_every=3)
    subprocess.run(
        [sys.executable, "-m", "worldmodel.training.train", *rerun],
        check=True,
        env=_env(),
        timeout=300,
    )
    assert torch.load(ckpt, weights_only=True)["step"] == step + 3
    steps = np.genfromtxt(out / "train_log.csv", delimiter=",", names=True)["step"]
    assert steps.tolist() == list(range(1, step + 4))  # rows after the checkpoint were redone
