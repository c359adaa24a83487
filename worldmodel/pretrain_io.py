"""Run-directory IO of wm-pretrain (atomic checkpoints, CSV log, loss PNG) and Hydra schemas."""

from __future__ import annotations

import csv
import os
import random
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodel.errors import CheckpointError

CHECKPOINT_NAME = "checkpoint.pt"
LOG_COLUMNS = ("step", "loss", "lr", "momentum", "clips_per_s")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to ``path.tmp`` then os.replace, so a kill never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_training_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The last checkpoint of a run, or None when the run has none yet."""
    path = run_dir / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path} is corrupt: {err}; delete it to start over") from err


def write_log(run_dir: Path, history: list[dict[str, float]]) -> None:
    """Rewrite log.csv (atomic) and the loss-curve PNG from the full history."""
    tmp = run_dir / "log.csv.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(history)
    os.replace(tmp, run_dir / "log.csv")
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["step"] for r in history], [r["loss"] for r in history], lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("L1 latent loss")
    ax.set_title("V-JEPA pretraining")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(run_dir / "loss.png.tmp.png", dpi=100)
    plt.close(fig)
    os.replace(run_dir / "loss.png.tmp.png", run_dir / "loss.png")


def plain_defaults(cls: type) -> dict:
    """Dataclass defaults as plain YAML-able values (nested dataclasses -> dicts, tuples -> lists).

    Registered as the Hydra schema node so every field can be overridden from the command line
    while the dataclass stays the one place that holds defaults.
    """

    def plain(value):
        if is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    out = {}
    for f in fields(cls):
        if f.default is not MISSING:
            out[f.name] = plain(f.default)
        elif f.default_factory is not MISSING:
            out[f.name] = plain(f.default_factory())
    return out
