"""Shared test setup: offscreen MuJoCo, few threads, deterministic torch; demo-script loader."""

import importlib.util
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))

DEMOS = Path(__file__).resolve().parents[1] / "demos"


@pytest.fixture
def load_demo():
    """``load_demo("probe_encoder") -> module``: a script of demos/ (not a package) imported by
    its path, so tests can call its functions."""

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, DEMOS / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load
