"""iCEM: a sample-efficient CEM (Pinneri et al., 2020 idea; our own implementation).

Differences from :class:`~planning.planners.cem.CEMPlanner`, same ``plan`` API and :class:`PlanResult`:

- coloured noise along the horizon (power spectrum ~ 1/f^beta; beta=0 is white noise), so
  sampled sequences are smooth when H > 1;
- the sample count decays per iteration, ``S_i = max(min_samples, S * decay^-i)``;
- a fraction of the previous iteration's elites is carried over with its known energies (no
  re-evaluation), and the current mean joins the last iteration's candidates;
- the best sequence ever seen is returned (``keep_best``), with its energy, so the result never
  gets worse than any evaluated candidate. Warm starting (shifted last mean) goes through
  ``init_mean`` exactly as for CEM.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from planning.planners.cem import (
    CEMConfig,
    Generators,
    PlanResult,
    make_score,
    plan_setup,
    standard_normal,
)
from planning.protocol import EnergyFn, LatentDynamics, final_step_l1_energy


@dataclass(frozen=True)
class ICEMConfig(CEMConfig):
    """CEMConfig plus iCEM's knobs (defaults: fewer samples, more momentum than plain CEM)."""

    samples: int = 128
    iterations: int = 10
    top_k: int = 16
    momentum_mean: float = 0.1
    noise_beta: float = 2.0
    sample_decay: float = 1.3
    min_samples: int = 48
    keep_elite_fraction: float = 0.3
    keep_best: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.noise_beta < 0:
            raise ValueError(f"ICEMConfig.noise_beta must be >= 0, got {self.noise_beta}")
        if self.sample_decay < 1.0:
            raise ValueError(f"ICEMConfig.sample_decay must be >= 1, got {self.sample_decay}")
        if not self.top_k <= self.min_samples <= self.samples:
            raise ValueError(
                f"ICEMConfig needs top_k <= min_samples <= samples, got {self.top_k}, "
                f"{self.min_samples}, {self.samples}"
            )
        if not 0.0 <= self.keep_elite_fraction <= 1.0:
            raise ValueError(
                f"ICEMConfig.keep_elite_fraction must be in [0, 1], got {self.keep_elite_fraction}"
            )

    def samples_at(self, iteration: int) -> int:
        """S_i, the number of fresh samples drawn at ``iteration``."""
        return max(self.min_samples, int(self.samples * self.sample_decay ** (-iteration)))


def coloured_noise_filter(horizon: int, beta: float, device: torch.device) -> Tensor:
    """(H, 2H) matrix M so that ``M @ w`` (w: 2H white unit-variance draws) has a ~1/f^beta
    spectrum along the horizon.

    Unit impulses are filtered in the Fourier domain over 2H steps and the first H rows kept,
    which avoids the wrap-around correlation of a length-H periodic filter. Rows are normalized
    so every step keeps unit variance; beta=0 gives independent (white) steps.
    """
    n = 2 * horizon
    eye = torch.eye(n, dtype=torch.float64)
    freqs = torch.fft.rfftfreq(n).to(torch.float64)  # (H+1,)
    freqs[0] = 1.0 / n
    scale = freqs ** (-beta / 2.0)
    filtered = torch.fft.irfft(torch.fft.rfft(eye, dim=0) * scale[:, None], n=n, dim=0)[:horizon]
    filtered = filtered / filtered.norm(dim=1, keepdim=True)
    return filtered.to(device=device, dtype=torch.float32)


def update_best(
    best: Tensor | None, best_energy: Tensor | None, cand: Tensor, cand_energy: Tensor
) -> tuple[Tensor, Tensor]:
    """Keep, per batch element, the lower-energy of the best-so-far (B,H,A) and a candidate."""
    if best is None or best_energy is None:
        return cand.clone(), cand_energy.clone()
    take = cand_energy < best_energy  # (B,)
    return torch.where(take[:, None, None], cand, best), torch.where(take, cand_energy, best_energy)


class ICEMPlanner:
    """iCEM over (B, H, A) action sequences; see the module docstring."""

    def __init__(self, cfg: ICEMConfig | None = None) -> None:
        self.cfg = cfg or ICEMConfig()

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
        B, H, A, dev = z.shape[0], cfg.horizon, cfg.action_dim, z.device
        start, gen, bounds, mean, std = plan_setup(
            cfg, dynamics, z, z_goal, init_mean, generator, state
        )
        score = make_score(cfg, bounds, dynamics, z, state, z_goal, energy_fn)
        min_std = cfg.min_std * bounds.half_range * bounds.free
        colour = coloured_noise_filter(H, cfg.noise_beta, dev)
        n_keep = math.ceil(cfg.keep_elite_fraction * cfg.top_k)
        kept = kept_energy = None
        best = best_energy = None
        trace, evaluated = [], 0
        with torch.no_grad():
            for i in range(cfg.iterations):
                white = standard_normal((B, cfg.samples_at(i), 2 * H, A), gen, dev)
                noise = torch.einsum("hk,bska->bsha", colour, white)  # (B, S_i, H, A)
                cand = bounds.project(mean[:, None] + std[:, None] * noise)
                if i == cfg.iterations - 1:
                    cand = torch.cat([cand, bounds.project(mean)[:, None]], dim=1)
                energy = score(cand)  # (B, S_i')
                evaluated += cand.shape[1]
                if kept is not None:
                    cand = torch.cat([cand, kept], dim=1)
                    energy = torch.cat([energy, kept_energy], dim=1)
                top = energy.topk(cfg.top_k, dim=1, largest=False)
                elites = cand.gather(1, top.indices[..., None, None].expand(-1, -1, H, A))
                kept, kept_energy = elites[:, :n_keep], top.values[:, :n_keep]
                best, best_energy = update_best(best, best_energy, elites[:, 0], top.values[:, 0])
                trace.append(top.values.mean(dim=1))
                m, s = cfg.momentum_mean, cfg.momentum_std
                mean = m * mean + (1 - m) * elites.mean(dim=1)
                std = torch.maximum(s * std + (1 - s) * elites.std(dim=1), min_std)
            if not cfg.keep_best:  # return the final mean, scored once
                best = bounds.project(mean)
                best_energy = score(best[:, None])[:, 0]
                evaluated += 1
        spread = elites.std(dim=1).mean(dim=(1, 2))
        return PlanResult(
            best, best_energy, mean, std, torch.stack(trace), spread,
            time.perf_counter() - start, evaluated,
        )  # fmt: skip
