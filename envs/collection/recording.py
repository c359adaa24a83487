"""Recording one episode from a gymnasium env (env contract of ``envs/``) into frames + a table.

Also builds the camera part of the dataset metadata from the env's MuJoCo model.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from worldmodel.data.meta import CameraMeta
from worldmodel.data.steps import StepTable, make_step_table

# obs key of each camera's image
CAMERA_OBS_KEYS = {"exterior": "rgb", "wrist": "wrist_rgb"}


class Expert(Protocol):
    """What ``make_expert(env, mode, rng)`` returns (see envs.experts)."""

    def reset(self) -> None: ...

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray: ...


def camera_metas(env: gym.Env, cameras: tuple[str, ...], image_size: int) -> tuple[CameraMeta, ...]:
    """CameraMeta of each camera, read from the env's MuJoCo model when it has one.

    MuJoCo stores each camera's pose relative to its parent body (``cam_pos``, ``cam_quat``) and
    its vertical field of view (``cam_fovy``, degrees). Envs without ``unwrapped.model`` get
    ``unwrapped.camera_fovy_deg`` (default 45) and an identity pose.
    """
    model = getattr(env.unwrapped, "model", None)
    out = []
    for name in cameras:
        if model is not None and hasattr(model, "camera"):
            cam = model.camera(name)
            parent = model.body(int(cam.bodyid[0])).name or "world"
            out.append(
                CameraMeta(
                    name=name,
                    width=image_size,
                    height=image_size,
                    fovy_deg=float(cam.fovy[0]),
                    parent=parent,
                    pos_m=tuple(float(v) for v in cam.pos),
                    quat_wxyz=tuple(float(v) for v in cam.quat),
                )
            )
        else:
            fovy = float(getattr(env.unwrapped, "camera_fovy_deg", 45.0))
            out.append(CameraMeta(name=name, width=image_size, height=image_size, fovy_deg=fovy))
    return tuple(out)


def record_episode(
    env: gym.Env,
    expert: Expert,
    seed: int,
    cameras: tuple[str, ...] = ("exterior",),
    max_steps: int = 0,
    fps: float = 4.0,
) -> tuple[dict[str, np.ndarray], StepTable]:
    """Run ``expert`` in ``env`` from ``reset(seed=seed)`` until truncation/termination.

    Args:
        env: env following the envs contract (obs rgb/state(/wrist_rgb), info applied_action,
            is_success, optional task_id and task_distance).
        expert: scripted policy, reset before the episode.
        seed: reset seed (free random instance).
        cameras: which cameras to record (keys of CAMERA_OBS_KEYS).
        max_steps: stop after this many actions (0: only the env's own time limit).
        fps: frame rate for ``time_s``.

    Returns:
        frames: camera -> (T, H, W, 3) uint8; table: StepTable with T rows, where action[t] is
        ``info["applied_action"]`` of the step taken at frame t (the last row zero).
    """
    obs, info = env.reset(seed=seed)
    expert.reset()
    rgb = obs["rgb"]
    if "exterior" in cameras and rgb.shape[0] != rgb.shape[1]:
        raise ValueError(
            f"obs['rgb'] is {rgb.shape[1]} px wide and {rgb.shape[0]} high: an env with several "
            "views side by side (EnvConfig.views); record each camera on its own (views default, "
            "wrist_camera=True)"
        )
    frames = {cam: [obs[CAMERA_OBS_KEYS[cam]]] for cam in cameras}
    states, actions = [obs["state"]], []
    success, distance = [bool(info.get("is_success", False))], [info.get("task_distance", np.nan)]
    task_id = info.get("task_id")
    # Privileged object position (expert/oracle/probe use only): NaN where the task has none.
    object_pos = [_object_pos(info)]
    while max_steps <= 0 or len(actions) < max_steps:
        action = expert.act(obs, info)
        obs, _, terminated, truncated, info = env.step(action)
        actions.append(np.asarray(info["applied_action"], dtype=np.float32))
        states.append(obs["state"])
        for cam in cameras:
            frames[cam].append(obs[CAMERA_OBS_KEYS[cam]])
        success.append(bool(info.get("is_success", False)))
        distance.append(info.get("task_distance", np.nan))
        object_pos.append(_object_pos(info))
        if terminated or truncated:
            break
    table = make_step_table(
        np.stack(states),
        np.stack(actions) if actions else np.zeros((0, 7)),
        fps,
        is_success=np.array(success),
        task_id=-1 if task_id is None else int(task_id),
        seed=np.int64(seed),
        task_distance=np.asarray(distance, dtype=np.float32),
        object_pos=np.stack(object_pos).astype(np.float32),
    )
    return {cam: np.stack(f).astype(np.uint8) for cam, f in frames.items()}, table


def _object_pos(info: dict[str, Any]) -> np.ndarray:
    """(3,) privileged position of the task's object, NaN when the task has no object."""
    pos = info.get("object_pos")
    return np.full(3, np.nan) if pos is None else np.asarray(pos, dtype=np.float64).reshape(3)
