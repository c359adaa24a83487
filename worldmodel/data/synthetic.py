"""Small synthetic episode datasets for tests and demos (no simulator needed).

A point moves in the plane under random bounded delta actions; each frame draws it as a bright
square on a smooth background whose position follows the state, so frames, states and actions
are consistent (frame t+1 is a function of frame t's state plus action t).
"""

from __future__ import annotations

import os

import numpy as np

from worldmodel.data.meta import CameraMeta, DatasetMeta
from worldmodel.data.steps import StepTable, make_step_table
from worldmodel.data.writer import EpisodeWriter


def synthetic_meta(
    image_size: int = 32, cameras: tuple[str, ...] = ("exterior",), fps: float = 4.0
) -> DatasetMeta:
    """Metadata of a synthetic dataset (square cameras, 45 degree fovy)."""
    cams = tuple(
        CameraMeta(name=c, width=image_size, height=image_size, fovy_deg=45.0) for c in cameras
    )
    return DatasetMeta(
        fps=fps,
        image_size=image_size,
        cameras=cams,
        env_id="synthetic/Dot-v0",
        env_version="1",
        task="synthetic",
        created_by="worldmodel.data.synthetic",
    )


def render_dot(states: np.ndarray, image_size: int, shade: int = 0) -> np.ndarray:
    """(T, 7) states -> (T, S, S, 3) uint8 frames with a square at the state's (x, y) in [0,1]^2."""
    grid = np.linspace(0.0, 1.0, image_size)
    base = np.empty((image_size, image_size, 3), dtype=np.float64)
    base[..., 0] = 60 + 80 * grid[None, :]
    base[..., 1] = 60 + 80 * grid[:, None]
    base[..., 2] = 90 + shade
    frames = np.repeat(base[None], len(states), axis=0)
    half = max(1, image_size // 10)
    for t, state in enumerate(states):
        col = int(np.rint(np.clip(state[0], 0, 1) * (image_size - 1)))
        row = int(np.rint(np.clip(state[1], 0, 1) * (image_size - 1)))
        frames[t, max(0, row - half) : row + half + 1, max(0, col - half) : col + half + 1] = (
            230,
            220,
            40 + 180 * state[6],
        )
    return np.clip(frames, 0, 255).astype(np.uint8)


def synthetic_episode(length: int, rng: np.random.Generator, fps: float = 4.0) -> StepTable:
    """One random-walk episode of ``length`` frames (actions bounded like the real envs)."""
    actions = np.zeros((length, 7), dtype=np.float32)
    actions[:-1, :2] = rng.uniform(-0.05, 0.05, size=(length - 1, 2))
    actions[:-1, 6] = rng.choice([-1.0, 0.0, 1.0], size=length - 1)
    states = np.zeros((length, 7), dtype=np.float32)
    states[0, :2] = rng.uniform(0.2, 0.8, size=2)
    for t in range(length - 1):
        states[t + 1] = states[t] + actions[t]
        states[t + 1, 6] = np.clip(states[t, 6] + actions[t, 6], 0.0, 1.0)
        states[t + 1, :2] = np.clip(states[t + 1, :2], 0.0, 1.0)
    success = np.linalg.norm(states[:, :2] - 0.5, axis=1) < 0.05
    return make_step_table(states, actions, fps, is_success=success, task_id=-1)


def write_synthetic_dataset(
    root: str | os.PathLike,
    num_episodes: int = 3,
    lengths: int | list[int] = 12,
    image_size: int = 32,
    cameras: tuple[str, ...] = ("exterior",),
    seed: int = 0,
) -> DatasetMeta:
    """Write ``num_episodes`` synthetic episodes into ``root``; returns the dataset meta."""
    meta = synthetic_meta(image_size, cameras)
    writer = EpisodeWriter(root, meta)
    rng = np.random.default_rng(seed)
    if isinstance(lengths, int):
        lengths = [lengths] * num_episodes
    for index, length in enumerate(lengths[:num_episodes]):
        table = synthetic_episode(length, rng, meta.fps)
        frames = {
            cam: render_dot(table.state, image_size, shade=40 * k) for k, cam in enumerate(cameras)
        }
        writer.write(index, frames, table)
    return meta
