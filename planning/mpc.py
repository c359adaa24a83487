"""Receding-horizon control: encode, plan, execute the first action(s), shift, repeat.

:class:`MPCController` holds one goal or a sub-goal schedule (e.g. grasp, carry, place). Goals
are encoded once when set (or, when no goal states are given, once at the first control step,
with that step's state as the proprioception); the current frame is encoded once per control
step. Between steps the planner is warm-started with the last plan shifted by the number of
executed actions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from planning.planners.cem import make_generator, shift_plan
from planning.protocol import EnergyFn, LatentDynamics, Planner, final_step_l1_energy


@dataclass(frozen=True)
class MPCConfig:
    """``action_chunk``: actions executed per plan (k); ``subgoal_energy_threshold``: advance to
    the next sub-goal when the current frame's energy to the active sub-goal falls below it
    (None = only step budgets switch); ``seed`` seeds the planner's generator at reset.

    Two optional filters on the executed action (off by default: the plan as it is), for arms
    whose gripper is open or closed (the gripper is the last dim of the DESIGN's 7-D state and
    action; 1 = closed):

    - ``gripper_close_at``: a planned closing of at least this closes the gripper all the way
      (to 1); other gripper changes (openings, smaller closings) are executed as planned. CEM
      returns the mean of its elites; where some close and some wait, that mean closes
      part-way, and a grasp closed part-way slips.
    - ``hold_arm_on_gripper``: the arm stands still in a step whose gripper command passes
      half-closed (0.5) either way, i.e. a grasp or a release (the other dims are zeroed), so
      a release does not throw the object and a grasp does not push it.
    """

    action_chunk: int = 1
    warm_start: bool = True
    subgoal_energy_threshold: float | None = None
    seed: int = 0
    device: str = "cpu"
    gripper_close_at: float | None = None
    hold_arm_on_gripper: bool = False

    def __post_init__(self) -> None:
        if self.action_chunk < 1:
            raise ValueError(f"MPCConfig.action_chunk must be >= 1, got {self.action_chunk}")
        if self.subgoal_energy_threshold is not None and self.subgoal_energy_threshold <= 0:
            raise ValueError(
                f"MPCConfig.subgoal_energy_threshold must be > 0, got {self.subgoal_energy_threshold}"
            )
        close, hold = self.gripper_close_at, self.hold_arm_on_gripper
        if close is not None and not 0.0 < close <= 1.0:
            raise ValueError(f"MPCConfig.gripper_close_at must lie in (0, 1], got {close}")
        if not isinstance(hold, bool):
            raise ValueError(f"MPCConfig.hold_arm_on_gripper must be true or false, got {hold}")

    def execute(self, actions: np.ndarray, state: np.ndarray) -> np.ndarray:
        """The action(s) to send: ``actions`` (A,) or a (k, A) chunk as planned, filtered as
        the class docstring says from the current (S,) ``state`` (the gripper closure of each
        later row of a chunk follows from the rows before it). The plan itself when both
        filters are off. A gripper change stays in [-1, 1] whatever the reported gripper.

        Raises ValueError on a non-finite ``state`` or ``actions``."""
        if not (np.all(np.isfinite(state)) and np.all(np.isfinite(actions))):
            raise ValueError(f"MPCConfig.execute: non-finite state {state} or actions {actions}")
        close, hold = self.gripper_close_at, self.hold_arm_on_gripper
        if close is None and not hold:
            return actions
        out = np.array(actions, dtype=np.float32, copy=True)
        rows = out.reshape(-1, out.shape[-1])  # a view: rows are edited in place
        # The robot's gripper lies in [0, 1]: a reading outside (sensor noise, another
        # convention) must not turn "close fully" into a change beyond the action box.
        grip = min(max(float(np.asarray(state).reshape(-1)[-1]), 0.0), 1.0)
        for row in rows:
            if close is not None and row[-1] >= close:
                row[-1] = 1.0 - grip
            target = min(max(grip + float(row[-1]), 0.0), 1.0)  # the robot clips to [0, 1]
            if hold and (grip < 0.5) != (target < 0.5):  # a grasp or a release
                row[:-1] = 0.0
            grip = target
        return out


class StepInfo(NamedTuple):
    """Diagnostics of one control step (``replanned`` False when served from a chunk)."""

    energy: float  # planned energy of the chosen sequence
    energy_trace: np.ndarray  # (I,) mean elite energy per iteration
    elite_spread: float
    seconds: float
    subgoal_index: int
    replanned: bool = True
    current_energy: float = float("nan")  # energy of the current frame to the active goal


# (z (1, N, D), z_goal (1, N, D), state (1, S)) -> (1, A): a first action to search around
Proposal = Callable[[Tensor, Tensor, Tensor], Tensor]


class MPCController:
    """Drives any :class:`LatentDynamics` with any :class:`Planner` (see module docstring).

    ``proposal`` (optional, e.g. :func:`planning.policy.policy_proposal`): each plan's search
    starts with its first action at the proposal for the current latent, the active goal's
    latent and the state (the rest of the horizon from the warm start), so a small budget
    refines a learned guess instead of searching from scratch.
    """

    def __init__(
        self,
        dynamics: LatentDynamics,
        planner: Planner,
        energy_fn: EnergyFn = final_step_l1_energy,
        cfg: MPCConfig | None = None,
        proposal: Proposal | None = None,
    ) -> None:
        self.dynamics, self.planner, self.energy_fn = dynamics, planner, energy_fn
        self.proposal = proposal
        self.cfg = cfg or MPCConfig()
        horizon = planner.cfg.horizon
        if self.cfg.action_chunk > horizon:
            raise ValueError(
                f"MPCConfig.action_chunk={self.cfg.action_chunk} exceeds planner horizon {horizon}"
            )
        self._goal_images: list[np.ndarray] = []
        self._goal_states: np.ndarray | None = None
        self._energy_fns: list[EnergyFn] = []
        self._budgets: list[int] | None = None
        self._z_goals: Tensor | None = None  # (K, N, D)
        self.reset()

    @property
    def has_goal(self) -> bool:
        return bool(self._goal_images)

    @property
    def subgoal_index(self) -> int:
        return self._subgoal

    def reset(self) -> None:
        """Forget the warm start, pending chunk and sub-goal progress (the goal is kept)."""
        self._mean: Tensor | None = None
        self._queue: list[np.ndarray] = []
        self._subgoal = 0
        self._steps_on_subgoal = 0
        self._generator = make_generator(self.cfg.seed, self.cfg.device)

    def snapshot(self) -> tuple:
        """The controller's progress (warm start, pending chunk, sub-goal and its step count,
        sampler state), for :meth:`restore`: e.g. a dry-run plan that must leave no trace."""
        gen = self._generator
        return (None if self._mean is None else self._mean.clone(), list(self._queue),
                self._subgoal, self._steps_on_subgoal,
                gen.get_state() if isinstance(gen, torch.Generator) else None)  # fmt: skip

    def restore(self, snap: tuple) -> None:
        """Return to a :meth:`snapshot` taken with the same goal."""
        mean, queue, self._subgoal, self._steps_on_subgoal, gen_state = snap
        self._mean, self._queue = mean, list(queue)
        if gen_state is not None:
            self._generator.set_state(gen_state)

    def set_goal(
        self,
        goal_images: np.ndarray | Sequence[np.ndarray],
        goal_states: np.ndarray | None = None,
        budgets: Sequence[int] | None = None,
        energy_fns: Sequence[EnergyFn | None] | None = None,
    ) -> None:
        """Set one goal (H,W,3) or a schedule: a sequence / (K,H,W,3) array of sub-goal images.

        Args:
            goal_images: uint8 goal image(s).
            goal_states: optional (7,) or (K, 7) proprioception of the goals.
            budgets: optional control steps per sub-goal (length K); the last sub-goal never
                ends. Without budgets, sub-goals switch on ``cfg.subgoal_energy_threshold``.
            energy_fns: optional energy per sub-goal (length K; None entries: the controller's
                ``energy_fn``), e.g. one that compares only some cameras while approaching.
                ``cfg.subgoal_energy_threshold`` and ``StepInfo.current_energy`` then use the
                active sub-goal's own energy, whose scale may differ from the default's.
        """
        images = [np.asarray(goal_images)] if np.ndim(goal_images) == 3 else list(goal_images)
        if not images or any(im.ndim != 3 or im.shape[-1] != 3 for im in images):
            raise ValueError("set_goal: goal_images must be (H,W,3) or a sequence of (H,W,3)")
        if budgets is not None and (len(budgets) != len(images) or min(budgets) < 1):
            raise ValueError(f"set_goal: need {len(images)} budgets >= 1, got {budgets}")
        if energy_fns is not None and len(energy_fns) != len(images):
            raise ValueError(f"set_goal: need {len(images)} energy_fns, got {len(energy_fns)}")
        self._energy_fns = [f or self.energy_fn for f in (energy_fns or [None] * len(images))]
        if goal_states is not None:
            goal_states = np.asarray(goal_states, dtype=np.float32).reshape(len(images), -1)
            if not np.all(np.isfinite(goal_states)):
                raise ValueError("set_goal: goal_states contain NaN or inf")
        self._goal_images, self._goal_states = images, goal_states
        self._budgets = None if budgets is None else [int(b) for b in budgets]
        self._z_goals = None
        if goal_states is not None:
            self._z_goals = self._encode(np.stack(images), goal_states)
        self.reset()

    def set_goal_latents(
        self,
        z_goals: Tensor,
        budgets: Sequence[int] | None = None,
        energy_fns: Sequence[EnergyFn | None] | None = None,
    ) -> None:
        """Set a sub-goal schedule as latents (K, N, D), e.g. proposed by
        :class:`planning.subgoals.TrajectoryLibrary` toward one goal image (the last latent
        the goal's own). Budgets, thresholds and energies work as in :meth:`set_goal`."""
        z_goals = torch.as_tensor(z_goals, dtype=torch.float32, device=self.cfg.device)
        if z_goals.ndim != 3 or len(z_goals) < 1:
            raise ValueError(
                f"set_goal_latents: need (K, N, D) latents, got {tuple(z_goals.shape)}"
            )
        if not bool(torch.isfinite(z_goals).all()):
            raise ValueError("set_goal_latents: latents contain NaN or inf")
        k = len(z_goals)
        if budgets is not None and (len(budgets) != k or min(budgets) < 1):
            raise ValueError(f"set_goal_latents: need {k} budgets >= 1, got {budgets}")
        if energy_fns is not None and len(energy_fns) != k:
            raise ValueError(f"set_goal_latents: need {k} energy_fns, got {len(energy_fns)}")
        self._energy_fns = [f or self.energy_fn for f in (energy_fns or [None] * k)]
        self._goal_images, self._goal_states = [None] * k, None  # latents only: nothing to encode
        self._budgets = None if budgets is None else [int(b) for b in budgets]
        self._z_goals = z_goals
        self.reset()

    def _encode(self, images: np.ndarray, states: np.ndarray) -> Tensor:
        dev = self.cfg.device
        with torch.no_grad():
            return self.dynamics.encode(
                torch.as_tensor(np.ascontiguousarray(images), device=dev),
                torch.as_tensor(states, dtype=torch.float32, device=dev),
            )

    def _advance_subgoal(self, z: Tensor) -> float:
        """Switch sub-goal on budget or threshold; returns the current frame's energy."""
        assert self._z_goals is not None
        last = len(self._goal_images) - 1
        current = self._current_energy(z)
        thr = self.cfg.subgoal_energy_threshold
        budget_done = (
            self._budgets is not None and self._steps_on_subgoal >= self._budgets[self._subgoal]
        )
        if self._subgoal < last and (budget_done or (thr is not None and current < thr)):
            self._subgoal += 1
            self._steps_on_subgoal = 0
            self._mean = None  # a new target: the old plan is no warm start
            current = self._current_energy(z)
        return current

    def _current_energy(self, z: Tensor) -> float:
        """Energy of the current frame's latent (1, N, D) to the active sub-goal."""
        energy_fn = self._energy_fns[self._subgoal]
        return float(energy_fn(z[:, None, None], self._z_goals[self._subgoal][None])[0, 0])

    def plan_chunk(self, rgb: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, StepInfo]:
        """Replan now and return the (k, A) chunk to execute plus diagnostics."""
        if not self.has_goal:
            raise ValueError("MPCController: no goal set; call set_goal first")
        if not np.all(np.isfinite(np.asarray(state, dtype=np.float64))):
            raise ValueError(f"MPCController: state contains NaN or inf: {state}")
        state = np.asarray(state, dtype=np.float32).reshape(1, -1)
        z = self._encode(np.asarray(rgb)[None], state)  # (1, N, D), once per control step
        if self._z_goals is None:
            states = np.repeat(state, len(self._goal_images), axis=0)
            self._z_goals = self._encode(np.stack(self._goal_images), states)
        current = self._advance_subgoal(z)
        z_goal = self._z_goals[self._subgoal][None]  # (1, N, D)
        state_t = torch.as_tensor(state, device=self.cfg.device)
        init_mean = self._mean if self.cfg.warm_start else None
        if self.proposal is not None:
            init_mean = self._proposed_mean(z, z_goal, state_t, init_mean)
        res = self.planner.plan(
            self.dynamics, z, state_t, z_goal, self._energy_fns[self._subgoal],
            init_mean=init_mean, generator=self._generator,
        )  # fmt: skip
        k = self.cfg.action_chunk
        chunk = res.actions[0, :k].cpu().numpy().astype(np.float32)
        energy = float(res.energy[0])
        if not (np.all(np.isfinite(chunk)) and np.isfinite(energy)):  # before any state changes
            raise RuntimeError(
                f"MPCController: non-finite plan (energy {energy}, actions {chunk}); "
                "is the model's output finite?"
            )
        self._mean = shift_plan(res.mean, k)
        self._steps_on_subgoal += k
        info = StepInfo(
            energy, res.energy_trace[:, 0].cpu().numpy(),
            float(res.elite_spread[0]), float(res.seconds), self._subgoal, True, current,
        )  # fmt: skip
        return chunk, info

    def _proposed_mean(
        self, z: Tensor, z_goal: Tensor, state: Tensor, warm: Tensor | None
    ) -> Tensor:
        """(1, H, A) search start: the proposal's action first, then the warm start (or 0)."""
        with torch.no_grad():
            first = torch.as_tensor(self.proposal(z, z_goal, state), dtype=torch.float32)
        if first.ndim != 2 or first.shape[0] != 1 or not bool(torch.isfinite(first).all()):
            raise RuntimeError(
                f"MPCController: the proposal gave {first.tolist()}, expected one finite "
                "(1, A) action"
            )
        if warm is None:
            warm = torch.zeros(1, self.planner.cfg.horizon, first.shape[-1])
        mean = warm.clone()
        mean[:, 0] = first.to(mean.device)
        return mean

    def act(self, rgb: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, StepInfo]:
        """One control step: the next (A,) action (replanning when the chunk is used up).

        Raises ValueError on a non-finite ``state`` (a bad sensor reading must not become a
        command) and RuntimeError when the plan or its energy is not finite (e.g. a model
        with NaN weights)."""
        if not np.all(np.isfinite(np.asarray(state, dtype=np.float64))):
            raise ValueError(f"MPCController: state contains NaN or inf: {state}")
        if not self._queue:
            chunk, info = self.plan_chunk(rgb, state)
            self._queue = list(chunk)
            self._last_info = info
        else:
            self._last_info = self._last_info._replace(replanned=False, seconds=0.0)
        return self.cfg.execute(self._queue.pop(0), state), self._last_info
