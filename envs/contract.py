"""The env contract: what a gymnasium env declares and returns so that ``wm-collect`` can record
it, ``wm-train`` can learn from the recording and ``wm-eval`` / ``wm-demo`` can plan in it.

Declared (read through the wrappers ``gymnasium.make`` adds; docs/envs.md has the table):

- ``env.metadata["render_fps"]``: control steps per second, one action per frame;
- ``env.metadata["cameras"]``: the cameras filmed, in order; the first one's image is
  ``obs["rgb"]``, any other camera ``c`` is ``obs[c + "_rgb"]``, each square ``(H, H, 3)`` uint8;
- ``env.metadata["views"]`` (optional, default the first camera alone): the cameras that
  ``obs["rgb"]`` and the goal images show side by side, ``(H, V*H, 3)``;
- ``env.metadata["action_kind"]``: ``ee_delta`` | ``delta`` | ``absolute``
  (:mod:`worldmodel.models.layout`);
- ``env.metadata["state_names"]`` / ``["action_names"]`` (optional): one name per dim;
- ``env.action_space``: a 1-D ``Box`` with finite bounds; ``env.observation_space``: a ``Dict``
  with ``rgb`` and a 1-D ``state`` ``Box``.

Returned: ``obs["state"]`` (S,) finite floats; ``info["is_success"]`` after reset and every step
and ``info["goal_rgb"]`` (like ``obs["rgb"]``) after reset, both for evaluation only;
``info["applied_action"]`` (optional; default: the action sent, clipped to the box).

Also here: resolving a task name or gymnasium id (:func:`resolve_env_id`) and making its env
with the keywords it takes (:func:`make_env`). No torch, like the rest of ``envs``.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from worldmodel.data.meta import ACTION_KINDS

__all__ = [
    "EnvContract",
    "EnvContractError",
    "check_env",
    "episode_steps",
    "image_key",
    "is_project_env",
    "make_env",
    "read_contract",
    "require_env",
    "resolve_env_id",
]


class EnvContractError(ValueError):
    """An env does not meet the contract; the message lists every problem."""


@dataclass(frozen=True)
class EnvContract:
    """What an env declares (see the module docstring): rate, cameras, views, state/action
    layout and the square image size of one view."""

    fps: float
    cameras: tuple[str, ...]
    views: tuple[str, ...]
    action_kind: str
    state_dim: int
    action_dim: int
    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    image_size: int
    state_names: tuple[str, ...] = ()  # empty: not declared
    action_names: tuple[str, ...] = ()


def image_key(contract: EnvContract, camera: str) -> str:
    """The observation key of ``camera``'s own image: ``rgb`` for the first camera, else
    ``<camera>_rgb``."""
    return "rgb" if camera == contract.cameras[0] else f"{camera}_rgb"


def _names(value: Any) -> tuple[str, ...] | None:
    """``value`` as a tuple of distinct non-empty names usable as file stems and in ``a+b``
    view strings, or None."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        return None
    names = tuple(value)
    ok = all(isinstance(n, str) and n and not set(n) & set("/+") for n in names)
    return names if ok and len(set(names)) == len(names) else None


def _box_dim(space: Any) -> int | None:
    """Length of a 1-D Box space, or None."""
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1 and space.shape[0] >= 1:
        return int(space.shape[0])
    return None


def _declared_names(meta: Mapping, key: str, dim: int | None, problems: list[str]) -> tuple:
    """``metadata[key]``: one name per dim, or () when not declared."""
    value = meta.get(key)
    if value is None or (isinstance(value, (list, tuple)) and not value):
        return ()
    names = _names(value)
    if names is None or (dim is not None and len(names) != dim):
        problems.append(
            f"metadata[{key!r}] is {value!r}: expected {dim} distinct names (one per dim) "
            "or nothing"
        )
        return ()
    return names


def _check_dims(kind: Any, state_dim: int, action_dim: int, problems: list[str]) -> None:
    """The dims ``action_kind`` needs (as ``worldmodel.models.layout.Layout`` checks them)."""
    if kind == "ee_delta" and (state_dim, action_dim) != (7, 7):
        problems.append(
            f"action_kind 'ee_delta' needs the 7-D end-effector state and action, the spaces "
            f"give state {state_dim}-D, action {action_dim}-D"
        )
    elif kind in ("delta", "absolute") and state_dim != action_dim:
        problems.append(
            f"action_kind {kind!r} maps action dims onto state dims: needs state_dim == "
            f"action_dim, the spaces give {state_dim} and {action_dim}"
        )


def _read(env: gym.Env) -> tuple[EnvContract | None, list[str]]:
    """The declared contract of ``env`` (None when incomplete) and the problems found."""
    problems: list[str] = []
    meta = getattr(env, "metadata", None)
    meta = meta if isinstance(meta, Mapping) else {}
    fps = meta.get("render_fps")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps):
        fps = None
    if fps is None or fps <= 0:
        problems.append(
            f"metadata['render_fps'] is {meta.get('render_fps')!r}: expected the control rate in "
            "steps per second (> 0; one action per recorded frame), e.g. 4"
        )
    cameras = _names(meta.get("cameras"))
    if cameras is None:
        problems.append(
            f"metadata['cameras'] is {meta.get('cameras')!r}: expected a list of distinct "
            "camera names (no '/' or '+'), e.g. ['top']; the first one's image is obs['rgb'], "
            "camera c's is obs['c_rgb']"
        )
    views = _names(meta.get("views", cameras[:1] if cameras else None))
    if cameras is not None and views is None:
        problems.append(
            f"metadata['views'] is {meta.get('views')!r}: expected the distinct camera names "
            "obs['rgb'] shows side by side (leave it out for the first camera alone)"
        )
    kind = meta.get("action_kind")
    if kind not in ACTION_KINDS:
        problems.append(
            f"metadata['action_kind'] is {kind!r}: expected one of {list(ACTION_KINDS)} "
            "(how an action moves the state: 7-D end-effector delta, per-dim delta, or target)"
        )
    action_dim = _box_dim(getattr(env, "action_space", None))
    low = high = ()
    if action_dim is None:
        problems.append(
            f"action_space is {getattr(env, 'action_space', None)!r}: expected a 1-D Box"
        )
    else:
        low = tuple(float(v) for v in env.action_space.low)
        high = tuple(float(v) for v in env.action_space.high)
        if not all(math.isfinite(v) for v in low + high) or any(
            lo >= hi for lo, hi in zip(low, high, strict=True)
        ):
            problems.append(
                f"action_space bounds {low} .. {high}: expected finite bounds, low < high per dim"
            )
    space = getattr(env, "observation_space", None)
    spaces = space.spaces if isinstance(space, gym.spaces.Dict) else {}
    state_dim = _box_dim(spaces.get("state"))
    if state_dim is None:
        problems.append(
            f"observation_space['state'] is {spaces.get('state')!r}: expected a 1-D Box "
            "(observation_space must be a Dict with 'rgb' and 'state')"
        )
    rgb = spaces.get("rgb")
    image_size = 0
    if not isinstance(rgb, gym.spaces.Box) or len(rgb.shape) != 3 or rgb.shape[2] != 3:
        problems.append(f"observation_space['rgb'] is {rgb!r}: expected a Box of (H, W, 3)")
    else:
        image_size = int(rgb.shape[0])
    named = {key: _declared_names(meta, key, dim, problems)
             for key, dim in (("state_names", state_dim), ("action_names", action_dim))}  # fmt: skip
    if state_dim is not None and action_dim is not None:  # else reported above
        _check_dims(kind, state_dim, action_dim, problems)
    if problems:
        return None, problems
    contract = EnvContract(
        fps=float(fps), cameras=cameras, views=views, action_kind=kind, state_dim=state_dim,
        action_dim=action_dim, action_low=low, action_high=high, image_size=image_size,
        **named,
    )  # fmt: skip
    return contract, []


def read_contract(env: gym.Env) -> EnvContract:
    """The declared part of the contract (no reset); EnvContractError listing the problems."""
    contract, problems = _read(env)
    if contract is None:
        raise EnvContractError(_message(env, problems))
    return contract


def _check_image(problems: list[str], where: str, image: Any, shape: tuple[int, ...]) -> None:
    arr = np.asarray(image) if image is not None else None
    if arr is None or arr.dtype != np.uint8 or arr.shape != shape:
        got = "nothing" if arr is None else f"{arr.dtype} {arr.shape}"
        problems.append(f"{where} is {got}: expected uint8 {shape}")


def _check_obs(problems: list[str], c: EnvContract, obs: Any, where: str) -> None:
    if not isinstance(obs, Mapping):
        problems.append(f"{where} observation is a {type(obs).__name__}: expected a dict")
        return
    h = c.image_size
    _check_image(problems, f"{where} obs['rgb']", obs.get("rgb"), (h, h * len(c.views), 3))
    for cam in c.cameras[1:]:
        key = image_key(c, cam)
        _check_image(problems, f"{where} obs[{key!r}] (camera {cam!r})", obs.get(key), (h, h, 3))
    state = obs.get("state")
    arr = np.asarray(state) if state is not None else np.zeros(0)
    if arr.dtype.kind != "f" or arr.shape != (c.state_dim,) or not np.all(np.isfinite(arr)):
        got = "nothing" if state is None else f"{arr.dtype} {arr.shape}"
        problems.append(f"{where} obs['state'] is {got}: expected {c.state_dim} finite floats")


def _check_info(problems: list[str], info: Any, where: str, evaluate: bool) -> bool:
    """Problems of ``info``; False when it is not a dict."""
    if not isinstance(info, Mapping):
        problems.append(f"{where} info is a {type(info).__name__}: expected a dict")
        return False
    if evaluate and not isinstance(info.get("is_success"), (bool, np.bool_)):
        problems.append(
            f"{where} info['is_success'] is {info.get('is_success')!r}: expected a bool "
            "(has the task been solved; wm-eval's success)"
        )
    return True


def check_env(env: gym.Env, *, evaluate: bool = True, seed: int = 0) -> list[str]:
    """Problems of ``env`` against the contract (empty: it meets it), each naming the missing
    or wrong key / attribute and what was expected. Runs ``reset(seed=seed)`` and one ``step``
    of the mid-box action, so reset the env again afterwards. ``evaluate=False`` leaves out
    what only evaluation needs (``goal_rgb``, ``is_success``) and requires ``obs['rgb']`` to be
    the first camera alone (recording stores each camera on its own)."""
    contract, problems = _read(env)
    if contract is None:
        return problems
    if not evaluate and contract.views != contract.cameras[:1]:
        problems.append(
            f"metadata['views'] is {list(contract.views)}: obs['rgb'] shows several views side "
            f"by side; recording needs the first camera {contract.cameras[0]!r} alone there"
        )
    try:
        obs, info = env.reset(seed=seed)
    except Exception as exc:  # reported, not raised: the caller gets every problem at once
        return [*problems, f"env.reset(seed={seed}) raised {type(exc).__name__}: {exc}"]
    _check_obs(problems, contract, obs, "reset")
    if _check_info(problems, info, "reset", evaluate) and evaluate:
        h = contract.image_size
        shape = (h, h * len(contract.views), 3)
        _check_image(problems, "reset info['goal_rgb']", info.get("goal_rgb"), shape)
    action = ((np.asarray(contract.action_low) + contract.action_high) / 2).astype(np.float32)
    try:
        out = env.step(action)
    except Exception as exc:
        return [*problems, f"env.step({action.tolist()}) raised {type(exc).__name__}: {exc}"]
    if not isinstance(out, tuple) or len(out) != 5:
        return [*problems, "env.step must return (obs, reward, terminated, truncated, info)"]
    _check_obs(problems, contract, out[0], "step")
    if _check_info(problems, out[4], "step", evaluate) and "applied_action" in out[4]:
        applied = np.asarray(out[4]["applied_action"])
        if applied.shape != (contract.action_dim,) or not np.all(np.isfinite(applied)):
            problems.append(
                f"step info['applied_action'] has shape {applied.shape}: expected "
                f"{contract.action_dim} finite numbers (or leave it out)"
            )
    return problems


def _message(env: gym.Env, problems: list[str]) -> str:
    spec = getattr(env, "spec", None)
    name = spec.id if spec is not None else type(env.unwrapped).__name__
    lines = "\n".join(f"  - {p}" for p in problems)
    return (
        f"env {name} does not meet the env contract "
        f"(docs/envs.md#bring-your-own-environment):\n{lines}"
    )


def require_env(env: gym.Env, *, evaluate: bool = True, seed: int = 0) -> EnvContract:
    """:func:`check_env`, raising EnvContractError listing every problem; returns the declared
    contract. Reset the env again afterwards."""
    problems = check_env(env, evaluate=evaluate, seed=seed)
    if problems:
        raise EnvContractError(_message(env, problems))
    return read_contract(env)


# ----------------------------------------------------------------- naming and making envs
def _tasks() -> dict[str, str]:
    import envs  # registers the wm/ ids (this module is part of the package: already imported)

    return envs.TASKS


def _spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The registered spec of ``env_id``; ``module:id`` imports ``module`` first (the module
    registers the id, also in spawned worker processes)."""
    module, _, name = env_id.rpartition(":")
    if module:
        importlib.import_module(module)
    return gym.spec(name)


def resolve_env_id(task: str) -> str:
    """The gymnasium id of ``task``: a task name of ``envs.TASKS`` (reach, grasp, ...) or any
    registered gymnasium id, ``module:id`` to import ``module`` first. ValueError otherwise."""
    tasks = _tasks()
    if task in tasks:
        return tasks[task]
    try:
        _spec(task)
    except Exception as exc:  # ImportError, gymnasium's NameNotFound / VersionNotFound, ...
        raise ValueError(
            f"{task!r} is neither a task name ({', '.join(tasks)}) nor a registered gymnasium "
            f"env id (use module:Name-v0 when a module registers it): {exc}"
        ) from exc
    return task


def is_project_env(task: str) -> bool:
    """True for the envs of this package (``envs.*`` entry points: the arm tasks, the fake
    env): they take the ``image_size`` / ``wrist_camera`` / ``views`` keywords. Other envs get
    only the keywords the user gives (``env_kwargs``)."""
    entry = _spec(resolve_env_id(task)).entry_point
    module = entry.partition(":")[0] if isinstance(entry, str) else entry.__module__
    return module == "envs" or module.startswith("envs.")


def episode_steps(task: str) -> int | None:
    """Control steps per episode of ``task``: ``envs.MAX_EPISODE_STEPS`` for the task names,
    else the registered ``max_episode_steps`` (None when the spec has none)."""
    import envs

    if task in envs.MAX_EPISODE_STEPS:
        return envs.MAX_EPISODE_STEPS[task]
    return _spec(resolve_env_id(task)).max_episode_steps


def make_env(
    task: str,
    *,
    image_size: int | None = None,
    views: Sequence[str] | None = None,
    wrist_camera: bool | None = None,
    max_episode_steps: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
) -> gym.Env:
    """``gymnasium.make`` the env of ``task`` (:func:`resolve_env_id`). Our envs
    (:func:`is_project_env`) also get ``image_size`` / ``views`` / ``wrist_camera`` where given;
    any env gets ``max_episode_steps`` and ``env_kwargs``."""
    kwargs = dict(env_kwargs or {})
    if is_project_env(task):
        given = {"image_size": image_size, "views": views, "wrist_camera": wrist_camera}
        kwargs = {**{k: v for k, v in given.items() if v is not None}, **kwargs}
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    return gym.make(resolve_env_id(task), **kwargs)
