"""The seam between planning and any world model.

The planner sees dynamics only through :class:`LatentDynamics` and scores predictions with an
:data:`EnergyFn`. Our learned world model, a loaded published checkpoint and an oracle built on
the simulator all implement the same three members, so they are interchangeable in the planner,
the MPC loop, the evaluation harness and the policy server.

Tensor letters: B batch (envs/goals planned at once), S samples, H horizon, N tokens per frame,
D feature, A action.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class LatentDynamics(Protocol):
    """What the planner needs from a world model.

    ``encode`` maps observations to latents; ``rollout`` predicts the latents that follow a
    batch of sampled action sequences. Latents returned by both are already layer-normed over
    D (a parameter-free layer norm), so energies are plain distances.
    """

    @property
    def action_dim(self) -> int:
        """A, the size of one action vector."""
        ...

    def encode(self, images: Tensor, states: Tensor) -> Tensor:
        """Encode observations.

        Args:
            images: (B, H_img, W_img, 3) uint8 RGB frames.
            states: (B, 7) float proprioception ``[x, y, z, roll, pitch, yaw, gripper]``.

        Returns:
            z: (B, N, D) float latents, layer-normed over D.
        """
        ...

    def rollout(self, z_context: Tensor, state_context: Tensor, actions: Tensor) -> Tensor:
        """Predict future latents for S sampled action sequences per batch element.

        Args:
            z_context: (B, N, D) latent of the current frame.
            state_context: (B, 7) current proprioception.
            actions: (B, S, H, A) action sequences.

        Returns:
            z_future: (B, S, H, N, D); entry h is the latent after applying
            actions[..., : h + 1, :].
        """
        ...


class EnergyFn(Protocol):
    """Scores predicted latents against goal latents: lower is better."""

    def __call__(self, z_future: Tensor, z_goal: Tensor) -> Tensor:
        """(B, S, H, N, D) predictions and (B, N, D) goals -> (B, S) energies."""
        ...


def final_step_l1_energy(z_future: Tensor, z_goal: Tensor) -> Tensor:
    """The published energy: mean |ẑ_H − z_goal| over tokens and features at the last step.

    Args:
        z_future: (B, S, H, N, D) predicted latents.
        z_goal: (B, N, D) goal latents.

    Returns:
        (B, S) energies.
    """
    if z_future.ndim != 5 or z_goal.ndim != 3:
        raise ValueError(
            f"expected z_future (B,S,H,N,D) and z_goal (B,N,D), got {tuple(z_future.shape)} "
            f"and {tuple(z_goal.shape)}"
        )
    z_last = z_future[:, :, -1]  # (B, S, N, D)
    return (z_last - z_goal[:, None]).abs().mean(dim=(-2, -1))


def token_weighted_l1_energy(weights: Tensor) -> EnergyFn:
    """The published energy with a weight per latent token: ``sum_n w_n mean_d |ẑ_H − z_goal|``
    over the normalised weights (N,) (e.g. a view's token mask: compare only that camera).
    Equal weights give :func:`final_step_l1_energy`."""
    w = torch.as_tensor(weights, dtype=torch.float32).flatten()
    if w.numel() == 0 or (w < 0).any() or float(w.sum()) <= 0:
        raise ValueError("token weights must be >= 0 with a positive sum")
    w = w / w.sum()

    def energy(z_future: Tensor, z_goal: Tensor) -> Tensor:
        if z_future.ndim != 5 or z_goal.ndim != 3 or z_goal.shape[-2] != w.numel():
            raise ValueError(
                f"expected z_future (B,S,H,{w.numel()},D) and z_goal (B,{w.numel()},D), got "
                f"{tuple(z_future.shape)} and {tuple(z_goal.shape)}"
            )
        per_token = (z_future[:, :, -1] - z_goal[:, None]).abs().mean(dim=-1)  # (B, S, N)
        return per_token @ w.to(per_token)

    return energy


class PlanResult(NamedTuple):
    """What a planner returns. Shapes: B batch, H horizon, A action, I iterations."""

    actions: Tensor  # (B, H, A) plan to execute (first step first)
    energy: Tensor  # (B,) energy of ``actions``
    mean: Tensor  # (B, H, A) final Gaussian mean (warm start for the next step)
    std: Tensor  # (B, H, A) final Gaussian std
    energy_trace: Tensor  # (I, B) mean elite energy per iteration
    elite_spread: Tensor  # (B,) mean elite std over (H, A) at the last iteration
    seconds: float
    samples_evaluated: int = 0  # rollouts per batch element, summed over iterations


class PlannerConfig(Protocol):
    """What the MPC loop reads from a planner's config."""

    horizon: int
    seed: int

    @property
    def action_dim(self) -> int: ...


@runtime_checkable
class Planner(Protocol):
    """An optimizer of (B, H, A) action sequences against an energy, over any dynamics.

    CEM, iCEM and the published reference loop implement it (:mod:`planning.planners`); so can
    any future planner (gradient-based, a learned proposal, ...). ``plan`` gets the context
    latents ``z`` (B, N, D), the current states (B, state dim) and the goal latents ``z_goal``
    (B, N, D), all computed once by the caller; ``init_mean`` warm-starts from the last plan.
    """

    cfg: PlannerConfig

    def plan(
        self,
        dynamics: LatentDynamics,
        z: Tensor,
        state: Tensor,
        z_goal: Tensor,
        energy_fn: EnergyFn = ...,
        init_mean: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> PlanResult: ...


@dataclass(frozen=True)
class ActionLayout:
    """Where the parts of an action vector live; defaults to DROID's 7-D layout.

    ``xyz_dims`` and ``rotation_dims`` are half-open ``(start, stop)`` index ranges; either may
    be ``None`` when an action has no such part, and so may ``gripper_index``.
    """

    xyz_dims: tuple[int, int] | None = (0, 3)
    rotation_dims: tuple[int, int] | None = (3, 6)
    gripper_index: int | None = 6

    def __post_init__(self) -> None:
        for name in ("xyz_dims", "rotation_dims"):
            dims = getattr(self, name)
            if dims is not None and (len(dims) != 2 or not 0 <= dims[0] < dims[1]):
                raise ValueError(
                    f"ActionLayout.{name} must be (start, stop) with 0<=start<stop, got {dims}"
                )
            if dims is not None:
                object.__setattr__(self, name, (int(dims[0]), int(dims[1])))
        if self.gripper_index is not None and self.gripper_index < 0:
            raise ValueError(f"ActionLayout.gripper_index must be >= 0, got {self.gripper_index}")

    def check(self, action_dim: int) -> None:
        """Raise ValueError when this layout does not fit actions of size ``action_dim``."""
        stops = [d[1] for d in (self.xyz_dims, self.rotation_dims) if d is not None]
        if self.gripper_index is not None:
            stops.append(self.gripper_index + 1)
        if stops and max(stops) > action_dim:
            raise ValueError(f"ActionLayout {self} does not fit action_dim={action_dim}")

    def xyz_slice(self) -> slice | None:
        return None if self.xyz_dims is None else slice(*self.xyz_dims)

    def rotation_slice(self) -> slice | None:
        return None if self.rotation_dims is None else slice(*self.rotation_dims)
