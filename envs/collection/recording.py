"""Recording one episode from a gymnasium env meeting the env contract (:mod:`envs.contract`)
into frames + a table, and a random policy for envs without an expert.

Also builds the camera part of the dataset metadata from the env's MuJoCo model.
"""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from envs.contract import image_key, read_contract
from worldmodel.data.meta import CameraMeta
from worldmodel.data.steps import StepTable, make_step_table


class Expert(Protocol):
    """What ``make_expert(env, mode, rng)`` returns (see envs.experts)."""

    def reset(self) -> None: ...

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray: ...


class RandomPolicy:
    """Uniform actions in the env's action box (any env; the expert mode is ignored)."""

    def __init__(self, env: gym.Env, rng: np.random.Generator) -> None:
        self.low, self.high, self.rng = env.action_space.low, env.action_space.high, rng

    def reset(self) -> None:
        """Nothing to reset (stateless)."""

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)


def random_policy(
    env: gym.Env, mode: str = "expert", rng: np.random.Generator | None = None
) -> RandomPolicy:
    """``CollectConfig.expert_factory=envs.collection.recording:random_policy``: the signature
    of ``envs.experts.make_expert``, for envs that have no scripted expert."""
    return RandomPolicy(env, rng if rng is not None else np.random.default_rng())


def camera_metas(env: gym.Env, cameras: tuple[str, ...], image_size: int) -> tuple[CameraMeta, ...]:
    """CameraMeta of each camera, read from the env's MuJoCo model when it has one.

    MuJoCo stores each camera's pose relative to its parent body (``cam_pos``, ``cam_quat``) and
    its vertical field of view (``cam_fovy``, degrees). A camera the env's model does not name
    (or an env without ``unwrapped.model``) gets ``unwrapped.camera_fovy_deg`` (None = unknown
    intrinsics) and an identity pose.
    """
    model = getattr(env.unwrapped, "model", None)
    out = []
    for name in cameras:
        cam = _model_camera(model, name)
        if cam is not None:
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
            fovy = getattr(env.unwrapped, "camera_fovy_deg", None)
            fovy = None if fovy is None else float(fovy)
            out.append(CameraMeta(name=name, width=image_size, height=image_size, fovy_deg=fovy))
    return tuple(out)


def _model_camera(model: Any, name: str) -> Any:
    """The MuJoCo camera ``name`` of ``model``, or None (no model, or a free camera such as
    gymnasium's MuJoCo envs render from)."""
    if model is None or not hasattr(model, "camera"):
        return None
    try:
        return model.camera(name)
    except KeyError:  # MuJoCo: "Invalid name ..."
        return None


def record_episode(
    env: gym.Env,
    expert: Expert,
    seed: int,
    cameras: tuple[str, ...] | None = None,
    max_steps: int = 0,
    fps: float | None = None,
) -> tuple[dict[str, np.ndarray], StepTable]:
    """Run ``expert`` in ``env`` from ``reset(seed=seed)`` until truncation/termination.

    Args:
        env: env meeting the env contract (:mod:`envs.contract`; optional info task_id,
            task_distance and object_pos are recorded too).
        expert: scripted policy, reset before the episode.
        seed: reset seed (free random instance).
        cameras: which of the env's declared cameras to record (None: all).
        max_steps: stop after this many actions (0: only the env's own time limit).
        fps: frame rate for ``time_s`` (None: the env's declared rate).

    Returns:
        frames: camera -> (T, H, W, 3) uint8; table: StepTable with T rows, where action[t] is
        ``info["applied_action"]`` of the step taken at frame t (default: the action sent,
        clipped to the action box; the last row zero).
    """
    contract = read_contract(env)
    cameras = contract.cameras if cameras is None else tuple(cameras)
    fps = contract.fps if fps is None else fps
    obs, info = env.reset(seed=seed)
    expert.reset()
    rgb = obs["rgb"]
    if contract.cameras[0] in cameras and rgb.shape[0] != rgb.shape[1]:
        raise ValueError(
            f"obs['rgb'] is {rgb.shape[1]} px wide and {rgb.shape[0]} high: an env with several "
            "views side by side (EnvConfig.views); record each camera on its own (views default, "
            "wrist_camera=True)"
        )
    keys = {cam: image_key(contract, cam) for cam in cameras}
    low, high = env.action_space.low, env.action_space.high
    frames = {cam: [obs[keys[cam]]] for cam in cameras}
    states, actions = [obs["state"]], []
    success, distance = [bool(info.get("is_success", False))], [info.get("task_distance", np.nan)]
    task_id = info.get("task_id")
    # Privileged object position (expert/oracle/probe use only): NaN where the task has none.
    object_pos = [_object_pos(info)]
    while max_steps <= 0 or len(actions) < max_steps:
        action = expert.act(obs, info)
        obs, _, terminated, truncated, info = env.step(action)
        applied = info.get("applied_action")
        applied = np.clip(action, low, high) if applied is None else applied
        actions.append(np.asarray(applied, dtype=np.float32))
        states.append(obs["state"])
        for cam in cameras:
            frames[cam].append(obs[keys[cam]])
        success.append(bool(info.get("is_success", False)))
        distance.append(info.get("task_distance", np.nan))
        object_pos.append(_object_pos(info))
        if terminated or truncated:
            break
    table = make_step_table(
        np.stack(states),
        np.stack(actions) if actions else np.zeros((0, contract.action_dim)),
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
