"""CollectConfig: the typed, validated configuration of ``wm-collect``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from worldmodel.config import from_mapping
from worldmodel.data.video import check_decodable_width


@dataclass(frozen=True)
class CollectConfig:
    """Settings of a data-collection run (``configs/collect.yaml`` only overrides these).

    Attributes:
        env: task name in ``envs.TASKS`` (reach, reach_with_object, grasp, pick_place) or the
            id of any registered gymnasium env meeting the env contract (``envs/contract.py``;
            ``module:Name-v0`` ids import ``module`` first). Every camera the env declares is
            recorded, with its rate and state/action layout.
        episodes: total episodes wanted in ``out_dir`` (indices 0 .. episodes-1).
        image_size: square render size in px of every camera (our envs; any other env renders
            its own size, set through ``env_kwargs`` if it takes one).
        wrist_camera: also record ``wrist.mp4`` (our envs).
        workers: worker processes (1 = record in this process).
        out_dir: dataset root folder.
        seed: base seed; episode i's reset seed and expert rng derive from (seed, i).
        expert_frac, noisy_frac, explore_frac, practice_frac: fractions of expert modes (sum
            to 1; see envs.experts for the modes).
        max_steps: cap on actions per episode (0 = the env's time limit only).
        expert_factory: ``module:function`` with the signature of envs.experts.make_expert
            (the arm tasks' scripted experts); ``envs.collection.recording:random_policy``
            draws uniform actions for any env.
        env_kwargs: extra keyword arguments for ``gymnasium.make``.
        crf, pix_fmt, preset: libx264 settings of the mp4 files.
        start_method: multiprocessing start method of the workers (spawn or forkserver).
        progress: show a tqdm progress bar.
    """

    env: str = "reach"
    episodes: int = 100
    image_size: int = 64
    wrist_camera: bool = False
    workers: int = 1
    out_dir: str = "data/reach"
    seed: int = 0
    expert_frac: float = 0.5
    noisy_frac: float = 0.3
    explore_frac: float = 0.2
    practice_frac: float = 0.0
    max_steps: int = 0
    expert_factory: str = "envs.experts:make_expert"
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    crf: int = 10
    pix_fmt: str = "yuv444p"
    preset: str = "veryfast"
    start_method: str = "forkserver"
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.env:
            raise ValueError("CollectConfig.env must name a task or env id")
        if not 1 <= self.episodes <= 1_000_000:
            raise ValueError(f"CollectConfig.episodes must be in [1, 1000000], got {self.episodes}")
        if self.image_size < 16:
            raise ValueError(f"CollectConfig.image_size must be >= 16, got {self.image_size}")
        try:
            check_decodable_width(self.image_size)
        except ValueError as exc:
            raise ValueError(f"CollectConfig.image_size: {exc}") from exc
        if self.workers < 1:
            raise ValueError(f"CollectConfig.workers must be >= 1, got {self.workers}")
        if not self.out_dir:
            raise ValueError("CollectConfig.out_dir must be a folder path")
        fracs = (self.expert_frac, self.noisy_frac, self.explore_frac, self.practice_frac)
        if min(fracs) < 0 or abs(sum(fracs) - 1.0) > 1e-6:
            raise ValueError(
                "CollectConfig.expert_frac/noisy_frac/explore_frac/practice_frac must be >= 0 "
                f"and sum to 1, got {fracs}"
            )
        if self.max_steps < 0:
            raise ValueError(f"CollectConfig.max_steps must be >= 0, got {self.max_steps}")
        if ":" not in self.expert_factory:
            raise ValueError(
                f"CollectConfig.expert_factory must be 'module:function', got "
                f"{self.expert_factory!r}"
            )
        if not 0 <= self.crf <= 51:
            raise ValueError(f"CollectConfig.crf must be in [0, 51], got {self.crf}")
        if self.pix_fmt not in ("yuv444p", "yuv420p"):
            raise ValueError(
                f"CollectConfig.pix_fmt must be yuv444p or yuv420p, got {self.pix_fmt}"
            )
        if self.start_method not in ("spawn", "forkserver"):
            raise ValueError(
                f"CollectConfig.start_method must be spawn or forkserver, got {self.start_method}"
            )
        object.__setattr__(self, "env_kwargs", dict(self.env_kwargs))


RENAMED = {"out": "out_dir"}  # deprecated CLI names, accepted for one release


def config_from_dict(values: Mapping[str, Any]) -> CollectConfig:
    """CollectConfig from a plain mapping (the Hydra config, or a worker's copy); unknown keys
    raise ValueError; ``out`` is the deprecated name of ``out_dir``."""
    return from_mapping(CollectConfig, values, renamed=RENAMED, where="wm-collect")
