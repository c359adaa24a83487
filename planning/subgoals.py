"""Sub-goal latents toward one final goal image, taken from the training data's own trajectories.

A user with a real robot can give one goal image, not a schedule of sub-goal renders. The flat
planner then compares every sampled future with a goal that may be many steps away, where the
latent distance says little. :class:`TrajectoryLibrary` keeps the latents of the training
episodes (the frozen features, pooled and layer-normed as the predictor sees them) and, for a
goal latent and the current latent, finds the training episode that came closest to the goal,
the frame of that episode closest to where the robot is now, and proposes the episode's latents
in between, evenly spaced, then the goal itself: a sub-goal schedule for
:meth:`planning.mpc.MPCController.set_goal_latents`. No second model is trained; the proposal
is only as good as the data's coverage of similar tasks (#25 compares it with the flat planner
on development instances).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor


class Proposal(NamedTuple):
    """Sub-goal latents (K, N, D), the last one the goal itself, and where they came from."""

    latents: Tensor
    episode: int
    frames: tuple[int, ...]  # the episode's frames used (the goal's nearest frame last)
    goal_distance: float  # mean |latent - goal| of that nearest frame


class TrajectoryLibrary:
    """Latent trajectories (T_e, N, D) of training episodes (see the module docstring)."""

    def __init__(self, latents: Sequence[Tensor]) -> None:
        if not latents:
            raise ValueError("TrajectoryLibrary needs at least one episode")
        shapes = {tuple(z.shape[1:]) for z in latents}
        if len(shapes) != 1 or any(z.ndim != 3 or len(z) < 2 for z in latents):
            raise ValueError(f"episodes must be (T>=2, N, D) latents of one shape, got {shapes}")
        self.latents = [torch.as_tensor(z, dtype=torch.float32) for z in latents]
        self._flat = torch.cat(self.latents)  # (sum T, N, D)
        self._owner = torch.cat(
            [torch.full((len(z),), e, dtype=torch.long) for e, z in enumerate(self.latents)]
        )
        self._frame = torch.cat([torch.arange(len(z)) for z in self.latents])

    @classmethod
    def from_features(cls, model, features: Sequence[np.ndarray]) -> TrajectoryLibrary:
        """From frozen features (T, h*w, D) per episode (e.g. a wm-cache feature cache), pooled
        and layer-normed by ``model`` (a WorldModel) exactly as its encode() does."""
        out = []
        with torch.no_grad():
            for f in features:
                z = torch.as_tensor(np.asarray(f, np.float32), device=model.device)
                out.append(model.latents(z).cpu())
        return cls(out)

    @classmethod
    def from_cache(cls, model, cache_dir) -> TrajectoryLibrary:
        """From the feature cache a model was trained on (``wm-cache``'s folder)."""
        from worldmodel.training.feature_cache import FeatureCache

        cache = FeatureCache(cache_dir, model.encoder.identity())
        return cls.from_features(model, [cache.features(e) for e in range(len(cache))])

    def __len__(self) -> int:
        return len(self.latents)

    @staticmethod
    def _distance(a: Tensor, b: Tensor) -> Tensor:
        """Mean absolute latent difference (the planner's L1 energy), a: (M, N, D), b: (N, D)."""
        return (a - b).abs().mean(dim=(-2, -1))

    def propose(self, z_goal: Tensor, z_now: Tensor, num_subgoals: int) -> Proposal:
        """``num_subgoals`` latents leading from ``z_now`` to ``z_goal`` (each (N, D)).

        The goal's nearest training frame picks the episode (frames late enough to leave room
        for the schedule preferred); within it, the frame before that nearest to ``z_now`` is
        the start; the sub-goals are evenly spaced frames after the start, then ``z_goal``.
        """
        if num_subgoals < 1:
            raise ValueError(f"num_subgoals must be >= 1, got {num_subgoals}")
        z_goal = torch.as_tensor(z_goal, dtype=torch.float32).reshape(self._flat.shape[1:])
        z_now = torch.as_tensor(z_now, dtype=torch.float32).reshape(self._flat.shape[1:])
        to_goal = self._distance(self._flat, z_goal)
        best = int(torch.argmin(to_goal))
        episode, end = int(self._owner[best]), int(self._frame[best])
        traj = self.latents[episode]
        start = int(torch.argmin(self._distance(traj[: end + 1], z_now)))
        if num_subgoals == 1 or end - start < 2:
            frames: tuple[int, ...] = (end,)
            latents = z_goal[None]
        else:
            inner = np.linspace(start, end, num_subgoals + 1)[1:-1].round().astype(int)
            frames = (*(int(i) for i in inner), end)
            latents = torch.cat([traj[inner], z_goal[None]])
        return Proposal(latents, episode, frames, float(to_goal[best]))
