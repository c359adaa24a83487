"""Run-directory IO of wm-train: progress bar, train/eval CSV logs, loss PNG, checkpoints.

Checkpoints reuse :mod:`worldmodel.pretrain_io` (atomic ``torch.save`` + ``os.replace``, RNG
states, corrupt-file errors). The CSVs are appended row by row and cut back to the checkpoint
step on resume, so rows logged after the last checkpoint of a killed run are redone, not doubled.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from worldmodel import pretrain_io
from worldmodel.checkpoints_predictor import load_state_strict
from worldmodel.predictor import ACPredictor

CKPT_FILE = pretrain_io.CHECKPOINT_NAME


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
        "rng": pretrain_io.rng_state(),
        "train_config": dataclasses.asdict(cfg),
    }
    out.mkdir(parents=True, exist_ok=True)
    pretrain_io.atomic_torch_save(state, out / CKPT_FILE)


def load_checkpoint(out: Path, predictor: ACPredictor, opt, sched, sampler) -> int:
    """Restore everything from ``out/checkpoint.pt`` if present; returns the step (0 if none).

    Raises:
        CheckpointError: the file is corrupt or its weights do not fit the predictor.
    """
    state = pretrain_io.load_training_checkpoint(out)
    if state is None:
        return 0
    load_state_strict(predictor, state["model"], str(out / CKPT_FILE))
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    sampler.load_state_dict(state["data"])
    pretrain_io.set_rng_state(state["rng"])
    return int(state["step"])
