"""Analytic :class:`~planning.protocol.LatentDynamics` with a known optimum, for tests and demos.

The latent of a state ``s`` (7-D: xyz, extrinsic-xyz Euler, gripper) is a set of smooth random
Fourier features ``z[n, d] = cos(W[n, d] · (s / scale) + b[n, d])`` layer-normed over d. The
rollout integrates the state exactly as the environments do (xyz added, rotation deltas added,
gripper ``clip(g + dg, 0, 1)``) and featurizes every step. Images are accepted and ignored:
``encode`` reads the state. Hence for a goal state ``g`` the energy is zero exactly when the
final predicted state equals ``g``, and the planner's optimum (``g - s`` split over the horizon)
is known in closed form.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from planning.protocol import ActionLayout
from worldmodel.models.latents import layer_norm as layer_norm_latents

STATE_DIM = 7


@dataclass(frozen=True)
class ToyDynamicsConfig:
    """Feature map of the toy dynamics.

    ``length_scale_m`` / ``angle_scale_rad`` / ``gripper_scale`` set how quickly features change
    with the state (smaller = sharper energy bowl); ``num_tokens`` x ``feature_dim`` is (N, D).
    """

    num_tokens: int = 4
    feature_dim: int = 64
    length_scale_m: float = 0.08
    angle_scale_rad: float = 0.6
    gripper_scale: float = 0.5
    layout: ActionLayout = field(default_factory=ActionLayout)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_tokens < 1 or self.feature_dim < 2:
            raise ValueError(
                f"ToyDynamicsConfig needs num_tokens>=1 and feature_dim>=2, got "
                f"{self.num_tokens}, {self.feature_dim}"
            )
        for name in ("length_scale_m", "angle_scale_rad", "gripper_scale"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ToyDynamicsConfig.{name} must be > 0, got {getattr(self, name)}")
        self.layout.check(STATE_DIM)


class ToyDynamics:
    """Smooth random-feature world model over the proprioceptive state (see module docstring)."""

    def __init__(self, cfg: ToyDynamicsConfig | None = None, device: str = "cpu") -> None:
        self.cfg = cfg or ToyDynamicsConfig()
        gen = torch.Generator().manual_seed(self.cfg.seed)
        n, d = self.cfg.num_tokens, self.cfg.feature_dim
        self._freq = torch.randn(STATE_DIM, n * d, generator=gen).to(device)  # (7, N*D)
        self._phase = (2 * torch.pi * torch.rand(n * d, generator=gen)).to(device)  # (N*D,)
        scale = torch.ones(STATE_DIM)
        lay = self.cfg.layout
        if lay.xyz_dims is not None:
            scale[lay.xyz_slice()] = self.cfg.length_scale_m
        if lay.rotation_dims is not None:
            scale[lay.rotation_slice()] = self.cfg.angle_scale_rad
        if lay.gripper_index is not None:
            scale[lay.gripper_index] = self.cfg.gripper_scale
        self._inv_scale = (1.0 / scale).to(device)  # (7,)

    @property
    def action_dim(self) -> int:
        return STATE_DIM

    def featurize(self, states: Tensor) -> Tensor:
        """(..., 7) states -> (..., N, D) layer-normed features."""
        x = (states.to(self._freq.dtype) * self._inv_scale) @ self._freq + self._phase  # (..., N*D)
        z = torch.cos(x).unflatten(-1, (self.cfg.num_tokens, self.cfg.feature_dim))
        return layer_norm_latents(z)

    def encode(self, images: Tensor, states: Tensor) -> Tensor:
        """(B, H, W, 3) images (ignored) and (B, 7) states -> (B, N, D) latents."""
        if states.ndim != 2 or states.shape[-1] != STATE_DIM:
            raise ValueError(
                f"ToyDynamics.encode: states must be (B, 7), got {tuple(states.shape)}"
            )
        if images.shape[0] != states.shape[0]:
            raise ValueError(
                f"ToyDynamics.encode: {images.shape[0]} images but {states.shape[0]} states"
            )
        return self.featurize(states.to(self._freq.device, torch.float32))

    def propagate(self, state: Tensor, actions: Tensor) -> Tensor:
        """(B, 7) state and (B, S, H, 7) actions -> (B, S, H, 7) states after each step."""
        lay = self.cfg.layout
        steps = actions.to(torch.float32)
        out = state[:, None, None, :].to(torch.float32) + steps.cumsum(dim=2)  # (B, S, H, 7)
        if lay.gripper_index is not None:
            g = lay.gripper_index
            grip = state[:, None, g].to(torch.float32).expand(steps.shape[:2])  # (B, S)
            grips = []
            for h in range(steps.shape[2]):  # sequential clip: loop over the (short) horizon
                grip = (grip + steps[:, :, h, g]).clamp(0.0, 1.0)
                grips.append(grip)
            out[..., g] = torch.stack(grips, dim=2)
        return out

    def rollout(self, z_context: Tensor, state_context: Tensor, actions: Tensor) -> Tensor:
        """Latents (B, S, H, N, D) after each step of (B, S, H, 7) actions from (B, 7) states."""
        if actions.ndim != 4 or actions.shape[-1] != STATE_DIM:
            raise ValueError(f"ToyDynamics.rollout: actions must be (B,S,H,7), got {actions.shape}")
        if state_context.shape != (actions.shape[0], STATE_DIM):
            raise ValueError(
                f"ToyDynamics.rollout: state_context must be (B, 7) with B={actions.shape[0]}, "
                f"got {tuple(state_context.shape)}"
            )
        return self.featurize(self.propagate(state_context, actions))


def blank_images(batch: int, size: int = 8) -> Tensor:
    """(B, size, size, 3) zero uint8 images for calls where the toy ignores pixels."""
    return torch.zeros(batch, size, size, 3, dtype=torch.uint8)
