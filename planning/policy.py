"""Goal-image control with a learned policy head instead of a search (#25).

:class:`PolicyController` is the :class:`planning.mpc.MPCController` counterpart for a
:class:`worldmodel.models.policy.GoalPolicy`: ``set_goal(image)`` encodes the goal once,
``act(rgb, state)`` encodes the frame and returns the policy's action, with the same
execution filters (``MPCConfig.gripper_close_at`` / ``hold_arm_on_gripper``), the planners'
rotation hold for the 7-D end-effector layout, and the model's recorded action bounds. One
forward pass instead of a few thousand predictor rollouts: the amortized planner of the issue.
It is trained from the final frames of demonstrations (``wm-train-policy``), so it needs one
goal image, no sub-goal images.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from planning.mpc import MPCConfig
from planning.protocol import final_step_l1_energy
from worldmodel.models.policy import (
    POLICY_DIR,
    PROPOSAL_DIR,
    GoalPolicy,
    PolicyEnsemble,
    is_policy_folder,
    load_goal_policy,
)

__all__ = ["POLICY_DIR", "PolicyController", "load_policy", "policy_proposal", "proposal_folder"]


def load_policy(model, folder: str | Path) -> GoalPolicy | PolicyEnsemble:
    """The policy (or ensemble) in ``folder`` (a model folder's is ``<model>/policy``), checked
    against the model's encoder; CheckpointError naming the file when it is missing or does not
    fit."""
    return load_goal_policy(folder, encoder=model.encoder.identity())


def proposal_folder(policy_folder: str | Path) -> Path:
    """The planner's proposal of a policy folder: its ``proposal/`` when that holds a policy
    (``wm-train-policy proposal=true``), else the policy itself."""
    nested = Path(policy_folder) / PROPOSAL_DIR
    return nested if is_policy_folder(nested) else Path(policy_folder)


def policy_proposal(policy: GoalPolicy | PolicyEnsemble):
    """``MPCController``'s ``proposal`` from a policy on the pooled latents the planner sees
    (ValueError for a ``pooled=false`` policy, whose latents the planner does not compute)."""
    if not policy.cfg.pooled:
        raise ValueError(
            "a proposal for the planner needs a policy on the pooled latents (pooled=true); "
            "this one takes the encoder's full grid"
        )
    policy = policy.eval()

    def propose(z: torch.Tensor, z_goal: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return policy(z.float(), z_goal.float(), state.float())

    return propose


class PolicyController:
    """See the module docstring. ``seconds`` of the last :meth:`act` (encode + policy) is kept
    in ``last_seconds``; ``last_energy`` is the current frame's energy to the goal."""

    def __init__(
        self, model, policy: GoalPolicy | PolicyEnsemble, cfg: MPCConfig | None = None
    ) -> None:
        pc = policy.cfg
        if (pc.state_dim, pc.action_dim) != (model.state_dim, model.action_dim):
            raise ValueError(
                f"the policy takes states of {pc.state_dim} and gives actions of "
                f"{pc.action_dim} dims, the model {model.state_dim} and {model.action_dim}"
            )
        self.model, self.policy, self.cfg = model, policy.eval(), cfg or MPCConfig()
        layout = model.layout
        self._low = np.asarray(layout.action_low, dtype=np.float32)
        self._high = np.asarray(layout.action_high, dtype=np.float32)
        self._held = slice(3, 6) if layout.is_published else None  # the planners' rotation hold
        self._z_goal: torch.Tensor | None = None
        self.last_seconds, self.last_energy = 0.0, float("nan")
        self.last_latent: torch.Tensor | None = None  # (1, N, D) of the last frame acted on

    def _encode(self, rgb: np.ndarray, state: np.ndarray) -> torch.Tensor:
        return self.model.encode(
            torch.as_tensor(np.ascontiguousarray(rgb)[None]),
            torch.as_tensor(np.asarray(state, dtype=np.float32).reshape(1, -1)),
            pooled=self.policy.cfg.pooled,
        )

    @property
    def goal_latent(self) -> torch.Tensor | None:
        """(1, N, D) latent of the goal image (None before :meth:`set_goal`)."""
        return self._z_goal

    def set_goal(self, goal_rgb: np.ndarray, state: np.ndarray) -> None:
        """Encode the (H, W, 3) uint8 goal image, with ``state`` as its proprioception."""
        goal_rgb = np.asarray(goal_rgb)
        if goal_rgb.ndim != 3 or goal_rgb.shape[-1] != 3:
            raise ValueError(f"set_goal: the goal must be one (H,W,3) image, got {goal_rgb.shape}")
        self._z_goal = self._encode(goal_rgb, state)

    @torch.no_grad()
    def act(self, rgb: np.ndarray, state: np.ndarray) -> np.ndarray:
        """The (A,) action to send now. Raises ValueError on a non-finite state or without a
        goal, RuntimeError when the policy's output is not finite."""
        if self._z_goal is None:
            raise ValueError("PolicyController: no goal set; call set_goal first")
        state = np.asarray(state, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(state)):
            raise ValueError(f"PolicyController: state contains NaN or inf: {state}")
        t0 = time.perf_counter()
        z = self._encode(rgb, state)
        self.last_latent = z
        action = self.policy(z, self._z_goal, torch.from_numpy(state)[None])[0].cpu().numpy()
        if not np.all(np.isfinite(action)):
            raise RuntimeError(f"PolicyController: non-finite action {action}")
        if self._held is not None:
            action[self._held] = 0.0
        action = np.clip(action, self._low, self._high).astype(np.float32)
        out = self.cfg.execute(action, state)
        self.last_seconds = time.perf_counter() - t0
        self.last_energy = float(final_step_l1_energy(z[:, None, None], self._z_goal)[0, 0])
        return out
