"""Cross-entropy-method planner over action sequences, batched over goals (B) and samples (S).

Each batch element keeps a diagonal Gaussian over its (H, A) action sequence. One iteration
draws S sequences, projects them into the action bounds, rolls all B*S of them through the
dynamics in one call, keeps the ``top_k`` lowest-energy elites and moves the Gaussian to their
mean/std (optionally with momentum). The context and goal latents are inputs: nothing that does
not depend on the sampled actions is recomputed inside the loop.
:func:`planning.planners.reference.reference_cem` is the literal published recipe (800 samples, 10
iterations, top-10, horizon 1, re-encoding every iteration) kept as the speed baseline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor

from planning.protocol import (
    ActionLayout,
    EnergyFn,
    LatentDynamics,
    PlanResult,
    final_step_l1_energy,
)
from worldmodel.data.actions import ACTION_HIGH, ACTION_LOW

DROID_LOW, DROID_HIGH = ACTION_LOW, ACTION_HIGH
Generators = torch.Generator | Sequence[torch.Generator] | None


@dataclass(frozen=True)
class CEMConfig:
    """CEM hyper-parameters. ``init_std``/``min_std`` are fractions of each dim's half-range.

    ``rotation``: "hold" fixes the layout's rotation dims at 0, "plan" samples them.
    ``xyz_bound``: "box" keeps xyz inside ``action_low/high``; "l1" also projects xyz onto the
    L1 ball of radius ``xyz_l1_radius_m``.
    ``action_cost``: per-dim weights of an effort term ``sum_h sum_d w_d |a_hd| / half_range_d``
    added to the energy (None: none, as published). A small gripper weight keeps the gripper
    as it is unless the goal image pays for the change: the latent barely sees a finger gap,
    so without it sampled gripper deltas drift and drop a held object.
    """

    samples: int = 256
    iterations: int = 6
    top_k: int = 16
    horizon: int = 1
    momentum_mean: float = 0.0
    momentum_std: float = 0.0
    init_std: float = 0.5
    min_std: float = 0.02
    action_low: tuple[float, ...] = DROID_LOW
    action_high: tuple[float, ...] = DROID_HIGH
    rotation: str = "hold"
    xyz_bound: str = "box"
    xyz_l1_radius_m: float = 0.075
    layout: ActionLayout = field(default_factory=ActionLayout)
    seed: int = 0
    action_cost: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        ints = {"samples": 1, "iterations": 1, "top_k": 1, "horizon": 1}
        for name, low in ints.items():
            if int(getattr(self, name)) < low:
                raise ValueError(f"CEMConfig.{name} must be >= {low}, got {getattr(self, name)}")
        if self.top_k > self.samples:
            raise ValueError(f"CEMConfig.top_k={self.top_k} exceeds samples={self.samples}")
        for name in ("momentum_mean", "momentum_std"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"CEMConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 < self.min_std <= self.init_std:
            raise ValueError(f"CEMConfig needs 0 < min_std <= init_std, got {self.min_std}")
        if self.action_cost is not None:
            object.__setattr__(self, "action_cost", tuple(float(v) for v in self.action_cost))
            if len(self.action_cost) != len(self.action_low) or min(self.action_cost) < 0:
                raise ValueError(f"CEMConfig.action_cost must be {len(self.action_low)} weights "
                                 f">= 0, got {self.action_cost}")  # fmt: skip
        object.__setattr__(self, "action_low", tuple(float(v) for v in self.action_low))
        object.__setattr__(self, "action_high", tuple(float(v) for v in self.action_high))
        if len(self.action_low) != len(self.action_high) or not self.action_low:
            raise ValueError(
                f"CEMConfig.action_low/high lengths differ: {self.action_low} {self.action_high}"
            )
        if any(lo >= hi for lo, hi in zip(self.action_low, self.action_high, strict=True)):
            raise ValueError(f"CEMConfig.action_low must be < action_high: {self.action_low}")
        if self.rotation not in ("hold", "plan"):
            raise ValueError(f"CEMConfig.rotation must be 'hold' or 'plan', got {self.rotation!r}")
        if self.xyz_bound not in ("box", "l1"):
            raise ValueError(f"CEMConfig.xyz_bound must be 'box' or 'l1', got {self.xyz_bound!r}")
        if self.xyz_l1_radius_m <= 0:
            raise ValueError(f"CEMConfig.xyz_l1_radius_m must be > 0, got {self.xyz_l1_radius_m}")
        self.layout.check(self.action_dim)

    @property
    def action_dim(self) -> int:
        """A, taken from the bounds."""
        return len(self.action_low)


def project_l1_ball(v: Tensor, radius: float) -> Tensor:
    """Euclidean projection of (..., K) vectors onto the L1 ball of ``radius`` (sort-based)."""
    mag = v.abs()
    u = mag.sort(dim=-1, descending=True).values  # (..., K)
    css = u.cumsum(dim=-1) - radius
    idx = torch.arange(1, v.shape[-1] + 1, device=v.device, dtype=v.dtype)
    rho = ((u - css / idx) > 0).sum(dim=-1, keepdim=True).clamp(min=1)  # (..., 1)
    theta = (css.gather(-1, rho - 1) / rho.to(v.dtype)).clamp(min=0.0)
    inside = mag.sum(dim=-1, keepdim=True) <= radius
    return torch.where(inside, v, v.sign() * (mag - theta).clamp(min=0.0))


class ActionBounds:
    """Bounds of one plan call as tensors, built once per call on the right device."""

    def __init__(self, cfg: CEMConfig, device: torch.device) -> None:
        self.cfg = cfg
        self.low = torch.tensor(cfg.action_low, device=device)
        self.high = torch.tensor(cfg.action_high, device=device)
        self.half_range = (self.high - self.low) / 2
        self.free = torch.ones(cfg.action_dim, device=device)  # 0 on held dims
        rot = cfg.layout.rotation_slice()
        if cfg.rotation == "hold" and rot is not None:
            self.free[rot] = 0.0

    def project(self, actions: Tensor) -> Tensor:
        """Clamp (..., A) actions into the box, held dims to 0, xyz into the L1 ball if asked."""
        out = torch.maximum(torch.minimum(actions, self.high), self.low) * self.free
        xyz = self.cfg.layout.xyz_slice()
        if self.cfg.xyz_bound == "l1" and xyz is not None:
            out = torch.cat(
                [out[..., : xyz.start], project_l1_ball(out[..., xyz], self.cfg.xyz_l1_radius_m),
                 out[..., xyz.stop :]], dim=-1,
            )  # fmt: skip
        return out


def shift_plan(mean: Tensor, steps: int = 1) -> Tensor:
    """Warm start: drop the first ``steps`` of a (B, H, A) plan and pad the end with zeros."""
    if steps <= 0:
        return mean.clone()
    pad = torch.zeros_like(mean[:, : min(steps, mean.shape[1])])
    return torch.cat([mean[:, steps:], pad], dim=1)[:, : mean.shape[1]]


def standard_normal(shape: tuple[int, ...], generator: Generators, device: torch.device) -> Tensor:
    """(B, ...) Gaussian noise; a list of B generators draws each batch element on its own."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, device=device)
    if len(generator) != shape[0]:
        raise ValueError(f"got {len(generator)} generators for batch size {shape[0]}")
    return torch.stack([torch.randn(shape[1:], generator=g, device=device) for g in generator])


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def check_inputs(
    dynamics: LatentDynamics, cfg: CEMConfig, z: Tensor, z_goal: Tensor, state: Tensor | None = None
) -> None:
    """Shapes agree and every input is finite: a NaN state or latent would make every sample's
    energy NaN and the "best" plan an arbitrary one."""
    for name, x in (("state", state), ("z", z), ("z_goal", z_goal)):
        if x is not None and not bool(torch.isfinite(x).all()):
            raise ValueError(f"planner input {name} contains NaN or inf")
    if dynamics.action_dim != cfg.action_dim:
        raise ValueError(
            f"dynamics.action_dim={dynamics.action_dim} but the planner bounds have "
            f"{cfg.action_dim} dims (action_low/action_high)"
        )
    if z.ndim != 3 or z_goal.shape != z.shape:
        raise ValueError(f"z and z_goal must both be (B,N,D), got {z.shape} and {z_goal.shape}")


class CEMState(NamedTuple):
    """The Gaussian after one CEM iteration and that iteration's elites."""

    mean: Tensor  # (B, H, A)
    std: Tensor  # (B, H, A)
    elites: Tensor  # (B, K, H, A)
    elite_energy: Tensor  # (B, K)


def effort(cfg: CEMConfig, bounds: ActionBounds, actions: Tensor) -> Tensor | float:
    """(..., H, A) actions -> (...) weighted |a| / half-range summed over H and A (0 if off)."""
    if cfg.action_cost is None:
        return 0.0
    w = torch.as_tensor(cfg.action_cost, dtype=actions.dtype, device=actions.device)
    return (actions.abs() / bounds.half_range.clamp_min(1e-9) * w).sum(dim=(-2, -1))


def cem_step(
    cfg: CEMConfig,
    bounds: ActionBounds,
    score,
    mean: Tensor,
    std: Tensor,
    generator: Generators,
) -> CEMState:
    """One CEM iteration: sample S around (mean, std), score (B,S,H,A) -> (B,S), refit."""
    B, H, A = mean.shape
    eps = standard_normal((B, cfg.samples, H, A), generator, mean.device)
    samples = bounds.project(mean[:, None] + std[:, None] * eps)  # (B, S, H, A)
    energy = score(samples)  # (B, S)
    top = energy.topk(cfg.top_k, dim=1, largest=False)
    elites = samples.gather(1, top.indices[..., None, None].expand(-1, -1, H, A))  # (B, K, H, A)
    m, s = cfg.momentum_mean, cfg.momentum_std
    new_mean = m * mean + (1 - m) * elites.mean(dim=1)
    min_std = cfg.min_std * bounds.half_range * bounds.free
    new_std = torch.maximum(s * std + (1 - s) * elites.std(dim=1), min_std)
    return CEMState(new_mean, new_std, elites, top.values)


def initial_gaussian(
    cfg: CEMConfig, bounds: ActionBounds, batch: int, init_mean: Tensor | None
) -> tuple[Tensor, Tensor]:
    """(B, H, A) starting mean (zeros or the projected warm start) and std."""
    shape = (batch, cfg.horizon, cfg.action_dim)
    dev = bounds.low.device
    if init_mean is None:
        mean = torch.zeros(shape, device=dev)
    elif tuple(init_mean.shape) != shape:
        raise ValueError(f"init_mean must be {shape}, got {tuple(init_mean.shape)}")
    elif not bool(torch.isfinite(init_mean).all()):
        raise ValueError("init_mean contains NaN or inf (the warm start)")
    else:
        mean = bounds.project(init_mean.to(dev, torch.float32))
    std = (cfg.init_std * bounds.half_range * bounds.free).expand(shape).clone()
    return mean, std


def plan_setup(
    cfg, dynamics: LatentDynamics, z: Tensor, z_goal: Tensor, init_mean, generator, state=None
):
    """What every CEM-family planner does first: check inputs, start the clock, and make the
    generator, the bounds and the initial Gaussian. Returns (start, gen, bounds, mean, std)."""
    check_inputs(dynamics, cfg, z, z_goal, state)
    start = time.perf_counter()
    gen = make_generator(cfg.seed, z.device) if generator is None else generator
    bounds = ActionBounds(cfg, z.device)
    mean, std = initial_gaussian(cfg, bounds, z.shape[0], init_mean)
    return start, gen, bounds, mean, std


def make_score(cfg, bounds: ActionBounds, dynamics: LatentDynamics, z, state, z_goal, energy_fn):
    """``score(actions (B, S, H, A)) -> (B, S)``: energy of the rollouts plus the effort term."""

    def score(actions: Tensor) -> Tensor:
        energy = energy_fn(dynamics.rollout(z, state, actions), z_goal)
        return energy + effort(cfg, bounds, actions)

    return score


@torch.no_grad()
def finish_plan(cfg: CEMConfig, bounds: ActionBounds, score, it, trace: list, start: float):
    """The :class:`PlanResult` of a finished CEM loop: the projected final mean, its energy
    under ``score``, the elite statistics of the last iteration ``it`` and the elapsed time."""
    actions = bounds.project(it.mean)
    final = score(actions[:, None])[:, 0]
    return PlanResult(
        actions, final, it.mean, it.std, torch.stack(trace),
        it.elites.std(dim=1).mean(dim=(1, 2)), time.perf_counter() - start,
        cfg.samples * cfg.iterations + 1,
    )  # fmt: skip


class CEMPlanner:
    """Batched CEM; see the module docstring. Stateless apart from its config."""

    def __init__(self, cfg: CEMConfig | None = None) -> None:
        self.cfg = cfg or CEMConfig()

    def plan(
        self,
        dynamics: LatentDynamics,
        z: Tensor,
        state: Tensor,
        z_goal: Tensor,
        energy_fn: EnergyFn = final_step_l1_energy,
        init_mean: Tensor | None = None,
        generator: Generators = None,
    ) -> PlanResult:
        """Plan (B, H, A) actions from latents z (B,N,D), states (B,7) towards z_goal (B,N,D)."""
        cfg = self.cfg
        start, gen, bounds, mean, std = plan_setup(
            cfg, dynamics, z, z_goal, init_mean, generator, state
        )
        score = make_score(cfg, bounds, dynamics, z, state, z_goal, energy_fn)
        trace = []
        with torch.no_grad():
            for _ in range(cfg.iterations):
                it = cem_step(cfg, bounds, score, mean, std, gen)
                mean, std = it.mean, it.std
                trace.append(it.elite_energy.mean(dim=1))
        return finish_plan(cfg, bounds, score, it, trace, start)
