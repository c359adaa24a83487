"""Agents the evaluation harness and the demo drive: random, world-model planners, the oracle.

Every agent follows :class:`Agent`: ``reset(env, obs, info)`` at the start of an episode, then
``act(obs, info) -> (action (7,), seconds, energy)`` once per control step, where ``seconds`` is
the wall-clock planning time of that action and ``energy`` the agent's current cost (energy of
the frame to the active goal, or the oracle's privileged distance; NaN when it has none).
``goal_rgb`` is the goal image in force (for videos). :func:`run_episode` drives one agent
through one episode and returns its :class:`EpisodeResult`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch

from planning.harness.oracle import SimOracleDynamics, oracle_energy
from planning.harness.results import EpisodeResult
from planning.harness.video import write_episode_video
from planning.mpc import MPCConfig, MPCController
from planning.planners import fit_to_model
from planning.planners.cem import shift_plan
from planning.planners.reference import reference_cem, reference_cem_config
from planning.protocol import LatentDynamics, token_weighted_l1_energy
from worldmodel.models.views import parse_views

ROTATION_DIMS = slice(3, 6)


class Agent(Protocol):
    """What :func:`planning.harness.evaluate.run_episode` drives."""

    goal_rgb: np.ndarray | None

    def reset(self, env: gym.Env, obs: dict, info: dict) -> None: ...

    def act(self, obs: dict, info: dict) -> tuple[np.ndarray, float, float]: ...


Budgets = Sequence[int] | Mapping[str, Sequence[int]] | None
# Control steps per sub-goal image within the tasks' time limits (envs.MAX_EPISODE_STEPS),
# for the default schedule (EnvConfig.approach_subgoals): grasp = hover, at object, closed on
# it, lifted; pick_place = hover, at object, grasped, carried, placed.
SUBGOAL_BUDGETS = {"grasp": (8, 6, 6, 20), "pick_place": (8, 6, 8, 14, 24)}
# How world-model planning executes the gripper (MPCConfig.gripper_close_at /
# hold_arm_on_gripper): a planned closing of >= 0.3 closes it all the way (CEM's mean over
# elites that close and elites that wait would close it part-way, and the grasp slips), and the
# arm stands still in a step that grasps or releases (the gripper command passes 0.5), so a
# release does not throw the object. Openings are executed as planned.
GRIPPER_EXECUTION = {"gripper_close_at": 0.3, "hold_arm_on_gripper": True}
# Cameras the goal energy compares, per task and sub-goal (None: every view the model has);
# see ``PlannerAgent``. Empty: all views everywhere.
EnergyViews = Mapping[str, Sequence[str | Sequence[str] | None] | None] | None
ENERGY_VIEWS: dict[str, tuple[str | None, ...]] = {}


def model_views(dynamics: Any) -> tuple[str, ...]:
    """The cameras ``dynamics`` expects side by side in a frame (``WorldModel.views``); the
    env must render the same (``EnvConfig.views``). Exterior alone when it records none."""
    return tuple(getattr(dynamics, "views", None) or ("exterior",))


def layout_mismatches(dynamics: Any, contract: Any) -> list[str]:
    """How the state/action layout and control rate ``dynamics`` was trained with
    (``WorldModel.layout``: state_dim, action_dim, action_kind, fps) differ from what an env
    declares (:class:`envs.contract.EnvContract`); empty when they agree or the dynamics record
    no layout (toy dynamics; fps None: not recorded)."""
    layout = getattr(dynamics, "layout", None)
    if layout is None or not hasattr(layout, "action_kind"):
        return []
    out = [
        f"{name} {getattr(layout, name)!r} vs {getattr(contract, name)!r}"
        for name in ("state_dim", "action_dim", "action_kind")
        if getattr(layout, name) != getattr(contract, name)
    ]
    if layout.fps is not None and not math.isclose(layout.fps, contract.fps, rel_tol=1e-6):
        out.append(f"fps {layout.fps:g} vs {contract.fps:g}")
    return out


def check_camera(dynamics: Any, env: gym.Env) -> None:
    """Refuse to plan, before the first action, when ``env`` (its declared env contract,
    :mod:`envs.contract`) is not what ``dynamics`` was trained on: other views side by side
    than the model's (ValueError), another state/action layout or control rate (ValueError,
    :func:`layout_mismatches`), or a training camera (``WorldModel.camera``) that differs from
    the env's first view (``CameraMismatchError``)."""
    from envs.collection.recording import camera_metas
    from envs.contract import read_contract

    contract = read_contract(env)  # EnvContractError naming what the env does not declare
    if contract.views != model_views(dynamics):
        raise ValueError(
            f"the world model takes the views {model_views(dynamics)} side by side, the env "
            f"renders {contract.views}: make the env render views={list(model_views(dynamics))}"
        )
    mismatches = layout_mismatches(dynamics, contract)
    if mismatches:
        name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        raise ValueError(
            f"the world model was trained on another layout or rate than env {name} declares "
            f"(model vs env: {'; '.join(mismatches)}); plan with a model trained on this env's "
            "data (wm-collect env=<its id>)"
        )
    check = getattr(dynamics, "check_camera", None)
    if check is None or getattr(dynamics, "camera", None) is None:
        return
    record = camera_metas(env, contract.views[:1], contract.image_size)[0]
    check(dataclasses.asdict(record))


def goal_schedule(info: dict, budgets: Budgets) -> tuple[list[np.ndarray], list | None]:
    """Goal images and step budgets of an episode: the sub-goals when there are several and
    ``budgets`` fits them (or is None: threshold switching), else the final goal alone.
    ``budgets`` may map task names (``info["task"]``) to their budgets."""
    if isinstance(budgets, Mapping):
        budgets = budgets.get(info.get("task"), ())
    subgoals = list(info.get("subgoal_rgbs") or [info["goal_rgb"]])
    if len(subgoals) > 1 and (budgets is None or len(budgets) == len(subgoals)):
        return subgoals, None if budgets is None else list(budgets)
    return [info["goal_rgb"]], None


class RandomAgent:
    """Uniform actions in the env's action box; for the 7-D end-effector delta (the env's
    declared ``action_kind``, the default) the rotation dims are held at 0, like the planners."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.goal_rgb: np.ndarray | None = None

    def reset(self, env: gym.Env, obs: dict, info: dict) -> None:
        self._low, self._high = env.action_space.low, env.action_space.high
        self._rng = np.random.default_rng([self.seed, int(info.get("task_id") or 0)])
        self.goal_rgb = info["goal_rgb"]
        kind = getattr(env, "metadata", {}).get("action_kind", "ee_delta")
        self._hold_rotation = kind == "ee_delta"

    def act(self, obs: dict, info: dict) -> tuple[np.ndarray, float, float]:
        t0 = time.perf_counter()
        action = self._rng.uniform(self._low, self._high).astype(np.float32)
        if self._hold_rotation:
            action[ROTATION_DIMS] = 0.0
        return action, time.perf_counter() - t0, float("nan")


class PlannerAgent:
    """Goal-image MPC with any LatentDynamics and a CEM-style planner (``plan`` API).

    With several sub-goal images (pick_place) and ``subgoal_budgets`` of the same length, the
    schedule switches on budgets; with ``subgoal_budgets=None`` on the MPC config's energy
    threshold (``MPCConfig.subgoal_energy_threshold``). ``energy_views`` maps a task to the
    views (e.g. ``"exterior"``, ``"exterior+wrist"``; None = all) the energy compares for each
    of its goal images; it needs dynamics with ``view_tokens`` (``WorldModel``). ``proposal``:
    a learned first guess each plan starts from (``MPCController``; wm_pcem).
    """

    def __init__(
        self,
        dynamics: LatentDynamics,
        planner: Any,
        mpc_cfg: MPCConfig | None = None,
        subgoal_budgets: Budgets = None,
        energy_views: EnergyViews = None,
        proposal=None,
    ) -> None:
        self.mpc = MPCController(
            dynamics, planner, cfg=_gripper_filters_fit(mpc_cfg, dynamics), proposal=proposal
        )
        self.subgoal_budgets, self.energy_views = subgoal_budgets, energy_views or {}
        self.goal_rgb: np.ndarray | None = None

    def reset(self, env: gym.Env, obs: dict, info: dict) -> None:
        check_camera(self.mpc.dynamics, env)
        self._goals, budgets = goal_schedule(info, self.subgoal_budgets)
        energies = self._energies(info.get("task"), len(self._goals))
        self.mpc.set_goal(self._goals, budgets=budgets, energy_fns=energies)
        self.goal_rgb = self._goals[0]

    def _energies(self, task: str | None, goals: int) -> list | None:
        """The energy per goal image from ``energy_views[task]`` (None: the default energy)."""
        spec = self.energy_views.get(task)
        if spec is None:
            return None
        if isinstance(spec, str):
            raise ValueError(
                f"energy_views[{task!r}] must list views per goal image, e.g. [{spec}]"
            )
        if len(spec) != goals:
            raise ValueError(
                f"energy_views[{task!r}] names views for {len(spec)} goal images, the episode "
                f"plans through {goals}"
            )
        dynamics = self.mpc.dynamics
        view_tokens = getattr(dynamics, "view_tokens", None)
        if view_tokens is None:  # one frame, one view (model_views): all tokens or an error
            views = model_views(dynamics)
            if any(v is not None and parse_views(v) != views for v in spec):
                raise ValueError(
                    f"energy_views[{task!r}] = {list(spec)}: these dynamics have no per-view "
                    f"tokens (view_tokens), only the views {list(views)} as one"
                )
            return None
        return [None if v is None else token_weighted_l1_energy(view_tokens(v)) for v in spec]

    def act(self, obs: dict, info: dict) -> tuple[np.ndarray, float, float]:
        t0 = time.perf_counter()
        action, step = self.mpc.act(obs["rgb"], obs["state"])
        seconds = time.perf_counter() - t0
        self.goal_rgb = self._goals[step.subgoal_index]
        energy = step.current_energy if np.isfinite(step.current_energy) else step.energy
        return np.asarray(action, dtype=np.float32), seconds, float(energy)


class RetrievalAgent(PlannerAgent):
    """One final goal image, sub-goals proposed from the training trajectories
    (:class:`planning.subgoals.TrajectoryLibrary`): at reset the goal and the first frame are
    encoded, the library proposes ``len(budgets)`` latents, and the MPC plans through them on
    the step ``budgets`` (the last one open-ended). No sub-goal images are used."""

    def __init__(self, dynamics, planner, library, budgets: Sequence[int],
                 mpc_cfg: MPCConfig | None = None) -> None:  # fmt: skip
        super().__init__(dynamics, planner, mpc_cfg)
        self.library, self.budgets = library, list(budgets)
        self.proposal = None

    def reset(self, env: gym.Env, obs: dict, info: dict) -> None:
        check_camera(self.mpc.dynamics, env)
        goal = info["goal_rgb"]
        dyn = self.mpc.dynamics
        with torch.no_grad():
            frames = torch.as_tensor(np.stack([goal, obs["rgb"]]))
            states = torch.as_tensor(np.stack([obs["state"], obs["state"]]), dtype=torch.float32)
            z_goal, z_now = dyn.encode(frames, states)
        self.proposal = self.library.propose(z_goal, z_now, len(self.budgets))
        k = len(self.proposal.latents)  # fewer when the nearest episode is too short
        self.mpc.set_goal_latents(self.proposal.latents, budgets=self.budgets[-k:])
        self._goals = [goal] * len(self.proposal.latents)  # for videos: only the final image
        self.goal_rgb = goal


class PolicyAgent:
    """A learned goal-conditioned policy (:class:`planning.policy.PolicyController`) toward the
    final goal image alone: no sub-goal images, no search."""

    def __init__(self, dynamics, policy, mpc_cfg: MPCConfig | None = None) -> None:
        from planning.policy import PolicyController

        self.controller = PolicyController(
            dynamics, policy, _gripper_filters_fit(mpc_cfg, dynamics)
        )
        self.goal_rgb: np.ndarray | None = None

    def reset(self, env: gym.Env, obs: dict, info: dict) -> None:
        check_camera(self.controller.model, env)
        self.goal_rgb = info["goal_rgb"]
        self.controller.set_goal(self.goal_rgb, obs["state"])

    def act(self, obs: dict, info: dict) -> tuple[np.ndarray, float, float]:
        action = self.controller.act(obs["rgb"], obs["state"])
        return action, self.controller.last_seconds, self.controller.last_energy


def _gripper_filters_fit(cfg: MPCConfig | None, dynamics: Any) -> MPCConfig | None:
    """``cfg`` with its gripper filters (``GRIPPER_EXECUTION``; they act on the last action
    dim) off when the model's recorded layout has no gripper there (e.g. joint deltas)."""
    layout = getattr(dynamics, "layout", None)
    if cfg is None or not hasattr(layout, "gripper_index"):  # no recorded Layout: as given
        return cfg
    if layout.gripper_index == layout.action_dim - 1:
        return cfg
    return dataclasses.replace(cfg, gripper_close_at=None, hold_arm_on_gripper=False)


class ReferenceCEMAgent:
    """The literal published loop: every step runs :func:`reference_cem` from scratch (no warm
    start; frame and goal re-encoded every iteration). Sub-goals switch on step budgets only."""

    def __init__(
        self,
        dynamics: LatentDynamics,
        cfg=None,
        subgoal_budgets: Budgets = None,
        device: str = "cpu",
    ) -> None:
        # bounds and action dims of the model's recorded layout (fit_to_model)
        self.dynamics, self.cfg = dynamics, fit_to_model(cfg or reference_cem_config(), dynamics)
        self.subgoal_budgets, self.device = subgoal_budgets, device
        self.goal_rgb: np.ndarray | None = None

    def reset(self, env: gym.Env, obs: dict, info: dict) -> None:
        check_camera(self.dynamics, env)
        self._goals, self._budgets = goal_schedule(info, self.subgoal_budgets)
        self._index, self._steps = 0, 0
        self.goal_rgb = self._goals[0]

    def act(self, obs: dict, info: dict) -> tuple[np.ndarray, float, float]:
        last = len(self._goals) - 1
        if self._budgets and self._index < last and self._steps >= self._budgets[self._index]:
            self._index, self._steps = self._index + 1, 0
        self.goal_rgb = self._goals[self._index]
        dev = self.device
        t0 = time.perf_counter()
        res = reference_cem(
            self.dynamics,
            torch.as_tensor(np.ascontiguousarray(obs["rgb"])[None], device=dev),
            torch.as_tensor(np.asarray(obs["state"], dtype=np.float32)[None], device=dev),
            torch.as_tensor(np.ascontiguousarray(self.goal_rgb)[None], device=dev),
            cfg=self.cfg,
        )
        self._steps += 1
        action = res.actions[0, 0].cpu().numpy().astype(np.float32)
        return action, time.perf_counter() - t0, float(res.energy[0])


class OracleAgent:
    """The same planner on :class:`SimOracleDynamics` with the privileged task distance as cost.

    At reset the shadow env is (re)built for the episode's env and reset to its ``task_id``;
    before every plan it is synced to the evaluated env. Warm start: the last plan shifted.
    """

    def __init__(self, planner: Any, warm_start: bool = True, seed: int = 0) -> None:
        self.planner, self.warm_start, self.seed = planner, warm_start, seed
        self.oracle: SimOracleDynamics | None = None
        self.goal_rgb: np.ndarray | None = None

    def reset(self, env: gym.Env, obs: dict, info: dict) -> None:
        task_id = env.unwrapped.task_id
        if task_id is None:
            raise ValueError("OracleAgent needs episodes reset with options={'task_id': k}")
        same_env = self.oracle is not None and self.oracle.sim.cfg == env.unwrapped.cfg
        if not same_env or self.oracle.env_id != env.spec.id:
            if self.oracle is not None:
                self.oracle.close()
            self.oracle = SimOracleDynamics.like(env)
        self.oracle.reset(task_id)
        self.oracle.check_same_instance(env)
        self._env, self._mean = env, None
        self._generator = torch.Generator().manual_seed(self.seed)
        self.goal_rgb = info["goal_rgb"]

    def act(self, obs: dict, info: dict) -> tuple[np.ndarray, float, float]:
        assert self.oracle is not None, "call reset first"
        t0 = time.perf_counter()
        self.oracle.sync(self._env)
        z = self.oracle.latent()  # (1, 1, D)
        state = torch.as_tensor(np.asarray(obs["state"], dtype=np.float32)[None])
        res = self.planner.plan(
            self.oracle, z, state, self.oracle.goal_latent(z), oracle_energy,
            init_mean=self._mean if self.warm_start else None, generator=self._generator,
        )  # fmt: skip
        self._mean = shift_plan(res.mean, 1)
        action = res.actions[0, 0].cpu().numpy().astype(np.float32)
        return action, time.perf_counter() - t0, float(self._env.unwrapped.task_distance())

    def close(self) -> None:
        if self.oracle is not None:
            self.oracle.close()


def run_episode(
    env: gym.Env, agent: Agent, method: str, episode: int, seed: int, max_steps: int,
    video_path: Path | None = None, dev_instance: bool = False, task: str | None = None,
) -> EpisodeResult:  # fmt: skip
    """Run one episode (until success or ``max_steps``) and return its record. The env resets
    with ``seed`` and evaluation instance ``episode`` (``dev_instance``: no task id, the
    instance the seed draws; an env may ignore the id, the seed then draws it). ``task``: the
    record's task name (default ``info["task"]``); ``info["task_distance"]`` is optional."""
    options = None if dev_instance else {"task_id": episode}
    obs, info = env.reset(seed=seed, options=options)
    agent.reset(env, obs, info)
    frames, goals, energies, times = [], [], [], []
    steps, success = 0, bool(info["is_success"])
    while not success and steps < max_steps:
        action, seconds, energy = agent.act(obs, info)
        frames.append(obs["rgb"])
        goals.append(agent.goal_rgb if agent.goal_rgb is not None else info["goal_rgb"])
        energies.append(energy)
        times.append(seconds)
        obs, _, terminated, truncated, info = env.step(action)
        steps, success = steps + 1, bool(info["is_success"])
        if terminated or truncated:
            break
    video = None
    if video_path is not None and frames:
        frames.append(obs["rgb"])
        goals.append(goals[-1])
        energies.append(energies[-1])
        video = str(write_episode_video(video_path, frames, goals, energies))
    return EpisodeResult(
        task or info["task"], method, episode, seed, success, steps, times,
        float(info.get("task_distance", np.nan)), video,
    )  # fmt: skip
