"""Worker side of wm-collect: episode plan (seed, mode), env construction, metadata, recording.

Everything here runs inside worker processes (spawn/forkserver), so functions are module-level
and take plain, picklable arguments.
"""

from __future__ import annotations

import dataclasses
import importlib
import multiprocessing as mp
import traceback
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from envs.collection.config import CollectConfig, config_from_dict
from envs.collection.recording import camera_metas, record_episode
from envs.contract import is_project_env, read_contract
from envs.contract import make_env as make_contract_env
from worldmodel.data.meta import DatasetMeta, VideoSpec
from worldmodel.data.writer import EpisodeWriter
from worldmodel.errors import DatasetError

MODES = ("expert", "noisy", "explore", "practice")
DEFAULT_EXPERT = CollectConfig.expert_factory  # the arm tasks' scripted experts
_GOLDEN = 0.6180339887498949


def episode_plan(cfg: CollectConfig, index: int) -> tuple[int, str]:
    """(reset seed, expert mode) of episode ``index``; depends only on ``cfg.seed`` and index.

    Modes follow the configured fractions along a golden-ratio sequence, so every prefix of
    episodes has close to the requested mix.
    """
    seed = int(np.random.SeedSequence([cfg.seed, index]).generate_state(1)[0])
    u = (index * _GOLDEN) % 1.0
    cum = np.cumsum([cfg.expert_frac, cfg.noisy_frac, cfg.explore_frac, cfg.practice_frac])
    return seed, MODES[min(int(np.searchsorted(cum, u, side="right")), len(MODES) - 1)]


def make_env(cfg: CollectConfig):
    """``gymnasium.make`` the configured env: our envs with ``image_size`` / ``wrist_camera``,
    any env with ``env_kwargs`` (:func:`envs.contract.make_env`)."""
    return make_contract_env(
        cfg.env,
        image_size=cfg.image_size,
        wrist_camera=cfg.wrist_camera,
        env_kwargs=cfg.env_kwargs,
    )


def build_meta(cfg: CollectConfig, env) -> DatasetMeta:
    """Dataset metadata for ``cfg`` from a constructed env: ids, and from the env's declared
    contract (:mod:`envs.contract`) its cameras, image size, control rate and state/action
    layout. Action bounds are recorded for layouts other than the 7-D end-effector delta,
    whose bounds are the DROID ones of :mod:`worldmodel.data.actions`."""
    contract = read_contract(env)
    fps = contract.fps
    try:
        pkg = f"jepa-worldmodel {version('jepa-worldmodel')}"
    except PackageNotFoundError:
        pkg = "jepa-worldmodel (not installed)"
    spec = env.spec
    extra = {
        "collect_config": dataclasses.asdict(cfg),
        "max_episode_steps": getattr(spec, "max_episode_steps", None),
        "ctrl_dt_s": 1.0 / fps,
    }
    bounds = {}
    if contract.action_kind != "ee_delta":
        bounds = {"action_low": contract.action_low, "action_high": contract.action_high}
    return DatasetMeta(
        fps=fps,
        image_size=contract.image_size,
        cameras=camera_metas(env, contract.cameras, contract.image_size),
        env_id=spec.id if spec else cfg.env,
        env_version=f"v{getattr(spec, 'version', None) or 0} ({pkg})",
        task=cfg.env,
        created_by=f"wm-collect ({pkg})",
        video=VideoSpec(pix_fmt=cfg.pix_fmt, crf=cfg.crf, preset=cfg.preset),
        state_dim=contract.state_dim,
        action_dim=contract.action_dim,
        state_names=contract.state_names,
        action_names=contract.action_names,
        action_kind=contract.action_kind,
        **bounds,
        extra=extra,
    )


def check_expert(cfg: CollectConfig) -> None:
    """Refuse the arm tasks' scripted experts (the default) on an env that is not ours."""
    if cfg.expert_factory == DEFAULT_EXPERT and not is_project_env(cfg.env):
        raise ValueError(
            f"CollectConfig.expert_factory: the scripted experts ({DEFAULT_EXPERT}) drive our "
            f"arm tasks only; for {cfg.env} use expert_factory="
            "envs.collection.recording:random_policy or a module:function of your own policy"
        )


def record_shard(cfg_dict: dict[str, Any], indices: list[int], out_queue: Any) -> None:
    """Record and write episodes ``indices``; put ("done", i, frames) or ("error", i, text).

    In a worker process this stops as soon as the parent process is gone (e.g. ``kill -9``), so
    a rerun does not race with orphans; an episode another run completed meanwhile is skipped
    (reported with 0 frames).
    """
    index = -1
    env = None
    parent = mp.parent_process()  # None when run in the main process
    try:
        cfg = config_from_dict(cfg_dict)
        env = make_env(cfg)
        writer = EpisodeWriter(cfg.out_dir, build_meta(cfg, env))
        make_expert = expert_factory(cfg.expert_factory)
        for index in indices:
            if parent is not None and not parent.is_alive():
                return
            if writer.is_complete(index):
                out_queue.put(("done", index, 0))
                continue
            seed, mode = episode_plan(cfg, index)
            expert = make_expert(env, mode, np.random.default_rng([cfg.seed, index, 1]))
            frames, table = record_episode(
                env, expert, seed, writer.meta.camera_names, cfg.max_steps, writer.meta.fps
            )
            table.extra.update(expert_mode=np.array(mode), episode_index=np.int64(index))
            if parent is not None and not parent.is_alive():
                return
            num_frames = len(table)
            try:
                writer.write(index, frames, table)
            except DatasetError:
                if not writer.is_complete(index):
                    raise
                num_frames = 0  # another run wrote this episode meanwhile
            out_queue.put(("done", index, num_frames))
    except Exception:  # the parent re-raises it with the worker's traceback
        out_queue.put(("error", index, traceback.format_exc()))
    finally:
        if env is not None:
            env.close()


def expert_factory(spec: str):
    """Import ``module:function`` (ValueError naming CollectConfig.expert_factory otherwise)."""
    module, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(
            f"CollectConfig.expert_factory {spec!r} cannot be imported: {exc}"
        ) from exc
