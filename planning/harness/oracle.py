"""The simulator as dynamics: a privileged upper bound for the planners.

:class:`SimOracleDynamics` implements :class:`~planning.protocol.LatentDynamics` with a shadow
copy of the evaluated environment (same id and :class:`~envs.EnvConfig`, reset to the same
``task_id``, so it holds the same task instance: goal, object, place target). Its "latent" of a
scene is the MuJoCo integration state plus the controller's tracking target (the anchor that
:meth:`ArmEnv.simulate` applies actions to)::

    z = [sim_state (D_sim), has_target (1), target (7)]   shape (B, 1, D_sim + 8), float64

``rollout`` restores ``z`` per sample and steps the physics for each action without rendering;
its "prediction" is the privileged ``task_distance()`` after each step, shape (B, S, H, 1, 1),
and :func:`oracle_energy` scores a plan by its final-step distance. Goals are part of the task
instance, so the goal latent is a dummy of the right shape (:meth:`goal_latent`). The source
env is never touched: planning only reads its state (:meth:`sync`).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

TARGET_DIM = 7


def oracle_energy(z_future: Tensor, z_goal: Tensor) -> Tensor:
    """(B, S, H, 1, 1) task distances (z_goal ignored) -> (B, S) distance after the last step."""
    if z_future.ndim != 5 or z_future.shape[-2:] != (1, 1):
        raise ValueError(f"oracle_energy expects (B,S,H,1,1) distances, got {z_future.shape}")
    return z_future[:, :, -1, 0, 0]


class SimOracleDynamics:
    """Shadow-env dynamics with the privileged task distance as output (see module docstring)."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None = None) -> None:
        self.env_id = env_id
        self.env = gym.make(env_id, **(env_kwargs or {}))
        self.sim = self.env.unwrapped
        for name in ("get_sim_state", "set_sim_state", "task_distance", "simulate"):
            if not hasattr(self.sim, name):
                raise TypeError(f"SimOracleDynamics: env {env_id!r} has no {name}()")
        self._sim_dim = int(self.sim.get_sim_state().shape[0])

    @classmethod
    def like(cls, env: gym.Env) -> SimOracleDynamics:
        """A shadow of ``env``: same registered id and the same EnvConfig."""
        if env.spec is None:
            raise ValueError("SimOracleDynamics.like: env has no spec; create it with gym.make")
        return cls(env.spec.id, {"config": env.unwrapped.cfg})

    @property
    def action_dim(self) -> int:
        return int(np.prod(self.sim.action_space.shape))

    @property
    def latent_dim(self) -> int:
        """D of the (B, 1, D) latent: sim state + target flag + target."""
        return self._sim_dim + 1 + TARGET_DIM

    def reset(self, task_id: int | None, seed: int | None = None) -> None:
        """Reset the shadow to the evaluated instance (deterministic for a given task_id/seed)."""
        options = None if task_id is None else {"task_id": int(task_id)}
        self.env.reset(seed=seed, options=options)

    def check_same_instance(self, source_env: gym.Env) -> None:
        """Raise ValueError unless the shadow's goal states equal the source's (same instance)."""
        mine, theirs = self.sim.goal_sim_states, source_env.unwrapped.goal_sim_states
        same = len(mine) == len(theirs) and all(
            np.array_equal(a, b) for a, b in zip(mine, theirs, strict=True)
        )
        if not same:
            raise ValueError(
                "SimOracleDynamics: the shadow env holds another task instance than the source; "
                "reset both with the same task_id (and seed)"
            )

    def sync(self, source_env: gym.Env) -> None:
        """Copy the source's sim state and tracking target into the shadow (source untouched)."""
        src = source_env.unwrapped
        self.sim.set_sim_state(src.get_sim_state())
        self.sim._target = None if src._target is None else np.array(src._target, copy=True)

    def latent(self) -> Tensor:
        """(1, 1, D) latent of the shadow's current scene (call :meth:`sync` first)."""
        target = self.sim._target
        flag = np.zeros(1) if target is None else np.ones(1)
        tgt = np.zeros(TARGET_DIM) if target is None else np.asarray(target, dtype=np.float64)
        z = np.concatenate([self.sim.get_sim_state(), flag, tgt])
        return torch.from_numpy(z)[None, None]

    def goal_latent(self, z: Tensor) -> Tensor:
        """A dummy goal of z's shape: the goal is part of the task instance, not of z."""
        return torch.zeros_like(z)

    def _restore(self, z_row: np.ndarray) -> None:
        self.sim.set_sim_state(z_row[: self._sim_dim])
        has_target = z_row[self._sim_dim] > 0.5
        self.sim._target = z_row[self._sim_dim + 1 :].copy() if has_target else None

    def encode(self, images: Tensor, states: Tensor) -> Tensor:
        """Not an image encoder: returns the shadow's current latent for each of the B rows."""
        return self.latent().expand(int(states.shape[0]), -1, -1).clone()

    def rollout(self, z_context: Tensor, state_context: Tensor, actions: Tensor) -> Tensor:
        """Simulate (B, S, H, A) actions from latents (B, 1, D) -> (B, S, H, 1, 1) distances."""
        if z_context.ndim != 3 or z_context.shape[1:] != (1, self.latent_dim):
            raise ValueError(
                f"SimOracleDynamics.rollout: z_context must be (B, 1, {self.latent_dim}), "
                f"got {tuple(z_context.shape)}"
            )
        if actions.ndim != 4 or actions.shape[0] != z_context.shape[0]:
            raise ValueError(f"rollout: actions must be (B,S,H,A), got {tuple(actions.shape)}")
        B, S, H, _ = actions.shape
        z_np = z_context[:, 0].detach().cpu().double().numpy()  # (B, D)
        acts = actions.detach().cpu().double().numpy()  # (B, S, H, A)
        out = np.empty((B, S, H))
        for b in range(B):
            for s in range(S):
                self._restore(z_np[b])
                for h in range(H):
                    self.sim.simulate(acts[b, s, h])
                    out[b, s, h] = self.sim.task_distance()
        return torch.from_numpy(out)[..., None, None]  # (B, S, H, 1, 1)

    def close(self) -> None:
        self.env.close()
