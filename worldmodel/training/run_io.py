"""Run folders of wm-pretrain and wm-train: atomic checkpoints with RNG states, CSV logs cut back
to the checkpoint step on resume (rows logged after the last checkpoint of a killed run are
redone, not doubled), a progress bar and loss PNGs."""

from __future__ import annotations

import csv
import dataclasses
import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldmodel.checkpoints.strict import describe, load_state_strict
from worldmodel.errors import CheckpointError
from worldmodel.models.predictor import ACPredictor

CHECKPOINT_NAME = "checkpoint.pt"
CKPT_FILE = CHECKPOINT_NAME
LOG_COLUMNS = ("step", "loss", "lr", "momentum", "clips_per_s")


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save to ``path.tmp`` then os.replace, so a kill never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as tensors and plain data (loadable with
    ``weights_only=True``: a checkpoint never needs pickle's arbitrary objects)."""
    version, words, gauss = random.getstate()
    kind, key, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": {"version": version, "words": torch.tensor(words, dtype=torch.int64),
                   "gauss": gauss},
        "numpy": {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }  # fmt: skip


def set_rng_state(state: dict[str, Any]) -> None:
    py, npy = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(int(w) for w in py["words"].tolist()), py["gauss"]))
    np.random.set_state(
        (npy["kind"], npy["key"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
         npy["cached_gaussian"])
    )  # fmt: skip
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_training_checkpoint(
    run_dir: Path, required: tuple[str, ...] = ()
) -> dict[str, Any] | None:
    """The last checkpoint of a run, or None when the run has none yet.

    Loaded with ``weights_only=True``: tensors and plain data only, so a checkpoint from a shared
    or downloaded run folder cannot run code. ``required``: top-level keys that must be present.

    Raises:
        CheckpointError: the file is corrupt, holds objects other than tensors and plain data
            (e.g. written by an older version, or crafted), or lacks a required key.
    """
    path = run_dir / CHECKPOINT_NAME
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" not in str(err):
            raise CheckpointError(
                f"{path} is corrupt ({describe(err)}); delete it to start over"
            ) from err
        raise CheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain data "
            f"({describe(err)}): written by an older version, or not by wm-train/wm-pretrain. "
            "Loading it could run code; move it away to start the run over."
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is corrupt ({describe(err)}); delete it to start over"
        ) from err
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path}: expected a dict of training state, got {type(state).__name__}"
        )
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(
            f"{path}: not a training checkpoint of this run type: missing {missing} "
            f"(has {sorted(state)})"
        )
    return state


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


class RunLog:
    """tqdm bar, train/eval CSVs (truncated to the resume step) and a loss-curve PNG."""

    def __init__(self, out: Path, active: bool, resume_step: int) -> None:
        self.out, self.active = out, active
        self.train_csv, self.eval_csv = out / "train_log.csv", out / "eval_log.csv"
        if active:
            out.mkdir(parents=True, exist_ok=True)
            for path in (self.train_csv, self.eval_csv):
                _truncate_csv(path, resume_step)

    def progress(self, total: int, step: int, enabled: bool):
        from tqdm import tqdm

        return tqdm(
            total=total, initial=step, disable=not (enabled and self.active), desc="wm-train"
        )

    def train_row(self, step: int, loss: float, gnorm: float, lr: float, bar) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        if self.active:
            _append_csv(self.train_csv, {"step": step, "loss": loss, "grad_norm": gnorm, "lr": lr})

    def eval_row(self, step: int, report: dict) -> None:
        if self.active:
            _append_csv(self.eval_csv, {"step": step, **report})
            self.plot()

    def plot(self) -> None:
        """loss_curve.png: train loss, validation teacher-forcing loss and its copy-last bar."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for path, cols in ((self.train_csv, ["loss"]), (self.eval_csv, ["val_tf", "copy_tf"])):
            if path.is_file():
                data = np.genfromtxt(path, delimiter=",", names=True, ndmin=1)
                for col in cols:
                    ax.plot(data["step"], data[col], label=col)
        ax.set_xlabel("step")
        ax.set_ylabel("L1 loss")
        ax.legend()
        fig.savefig(self.out / "loss_curve.png", dpi=80)
        plt.close(fig)


def _append_csv(path: Path, row: dict) -> None:
    new = not path.is_file()
    with path.open("a") as f:
        if new:
            f.write(",".join(row) + "\n")
        f.write(",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values()))
        f.write("\n")


def _truncate_csv(path: Path, step: int) -> None:
    """Drop rows logged after ``step`` (work lost by a crash is redone after resume)."""
    if not path.is_file():
        return
    if step == 0:
        path.unlink()
        return
    lines = path.read_text().splitlines()
    kept = lines[:1] + [ln for ln in lines[1:] if int(float(ln.split(",")[0])) <= step]
    path.write_text("".join(ln + "\n" for ln in kept))


def save_checkpoint(out: Path, predictor: ACPredictor, opt, sched, sampler, step: int, cfg) -> None:
    """Everything a rerun needs to continue bit-for-bit, written atomically."""
    state = {
        "model": predictor.state_dict(),
        "predictor_config": dataclasses.asdict(predictor.cfg),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "step": step,
        "data": sampler.state_dict(),
        "rng": rng_state(),
        "train_config": dataclasses.asdict(cfg),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(state, out / CKPT_FILE)


def load_checkpoint(out: Path, predictor: ACPredictor, opt, sched, sampler) -> int:
    """Restore everything from ``out/checkpoint.pt`` if present; returns the step (0 if none).

    Raises:
        CheckpointError: the file is corrupt or its weights do not fit the predictor.
    """
    state = load_training_checkpoint(
        out, required=("model", "optimizer", "scheduler", "step", "data", "rng")
    )
    if state is None:
        return 0
    load_state_strict(predictor, state["model"], str(out / CKPT_FILE), what="predictor")
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    sampler.load_state_dict(state["data"])
    set_rng_state(state["rng"])
    return int(state["step"])
