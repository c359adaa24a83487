"""Shared test setup: offscreen MuJoCo, few threads, deterministic torch."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))
