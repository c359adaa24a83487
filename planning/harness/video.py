"""Episode videos: observation | goal | energy over time, side by side, as an mp4.

The energy panel is drawn with numpy (a polyline on a dark background, the current step
highlighted), so writing a video costs no plotting library per frame.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import imageio.v2 as imageio
import numpy as np


def file_stem(task: str) -> str:
    """``task`` usable in a video's file name (gymnasium ids hold ``/`` and ``:``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", task)


def _draw_line(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, color: np.ndarray) -> None:
    """Draw a line segment into an (H, W, 3) uint8 image in place."""
    n = max(abs(x1 - x0), abs(y1 - y0)) + 1
    xs = np.linspace(x0, x1, n).round().astype(int)
    ys = np.linspace(y0, y1, n).round().astype(int)
    h, w = img.shape[:2]
    keep = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    img[ys[keep], xs[keep]] = color


def energy_panel(energies: Sequence[float], size: int, current: int) -> np.ndarray:
    """(size, size, 3) uint8 plot of ``energies`` up to and including step ``current``."""
    img = np.full((size, size, 3), 24, dtype=np.uint8)
    vals = np.asarray(energies[: current + 1], dtype=float)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return img
    all_vals = np.asarray([e for e in energies if np.isfinite(e)], dtype=float)
    lo, hi = float(all_vals.min()), float(all_vals.max())
    span = hi - lo if hi > lo else 1.0
    pad = max(2, size // 16)
    n_total = max(len(energies) - 1, 1)
    xs = pad + (np.arange(vals.size) / n_total * (size - 2 * pad)).round().astype(int)
    ys = (size - pad - (vals - lo) / span * (size - 2 * pad)).round().astype(int)
    line = np.array([90, 200, 255], dtype=np.uint8)
    for i in range(1, vals.size):
        _draw_line(img, xs[i - 1], ys[i - 1], xs[i], ys[i], line)
    r = max(1, size // 40)
    img[max(ys[-1] - r, 0) : ys[-1] + r + 1, max(xs[-1] - r, 0) : xs[-1] + r + 1] = (255, 160, 40)
    return img


def compose_frame(
    obs: np.ndarray, goal: np.ndarray, energies: Sequence[float], step: int
) -> np.ndarray:
    """One video frame: (S, 2W + S, 3) uint8 with observation, goal and energy panels (W = S,
    or a multiple of it for several views side by side)."""
    if obs.shape != goal.shape or obs.ndim != 3 or obs.shape[2] != 3:
        raise ValueError(
            f"obs and goal must be equal (S,W,3) images, got {obs.shape}, {goal.shape}"
        )
    size = obs.shape[0]
    return np.concatenate([obs, goal, energy_panel(energies, size, step)], axis=1)


def write_episode_video(
    path: Path,
    observations: Sequence[np.ndarray],
    goals: Sequence[np.ndarray],
    energies: Sequence[float],
    fps: int = 4,
) -> Path:
    """Write the episode as an mp4: frame t shows observation t, its goal and energies[: t + 1].

    ``goals`` holds the goal image in force at each step (it changes with sub-goals).
    """
    if not (len(observations) == len(goals) == len(energies)):
        raise ValueError(
            f"need one goal and energy per observation, got {len(observations)} observations, "
            f"{len(goals)} goals, {len(energies)} energies"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [
        compose_frame(o, g, energies, t)
        for t, (o, g) in enumerate(zip(observations, goals, strict=True))
    ]
    # Upscale small frames so players show them crisply; keep sizes multiple of 16 for x264.
    scale = max(1, 256 // frames[0].shape[0])
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=8, macro_block_size=16) as w:
        for f in frames:
            w.append_data(np.repeat(np.repeat(f, scale, axis=0), scale, axis=1))
    return path
