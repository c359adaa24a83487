"""A goal-conditioned policy head on the world model's frozen latents (#25).

``GoalPolicy(z, z_goal, state) -> action``: the current frame's latent and the goal image's
latent (both (B, N, D), pooled and layer-normed as ``WorldModel.encode`` returns them) and the
robot state (B, S) give one action (B, A) in the robot's units. It is trained by behaviour
cloning on the episodes the predictor was trained on, with the episode's last frame (or a later
frame: hindsight) as the goal (``wm-train-policy``, :mod:`worldmodel.training.train_policy`).

What it is for: an amortized planner. One forward pass costs about a thousandth of a CEM
plan, so it acts alone where a task needs no search, and it gives a planner a first guess
(``planning.harness.agents.PolicyAgent``). Unlike the goal energy, it learns from the data
*which way* a goal is reached (pick before place), which a one-step latent distance to the
final goal image cannot see.

Each token is projected to ``proj`` dims (current and goal frames by separate maps), the
projections are flattened beside the state, and an MLP gives the action normalized by the
training actions' mean and std (stored as buffers, so the module returns robot units).

:class:`PolicyEnsemble`: the mean action of K such policies trained with other seeds (and
other held-out episodes), which averages out what each one alone got wrong; it stands wherever
a ``GoalPolicy`` does. :func:`load_goal_policy` loads either from a folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from worldmodel.errors import CheckpointError

POLICY_DIR = "policy"  # a world model folder's policy (wm-train-policy install=true)
# inside POLICY_DIR: the planner's proposal, trained with nearer (hindsight) goals beside final
# ones (wm-train-policy proposal=true install=true); wm_pcem falls back to the policy itself
PROPOSAL_DIR = "proposal"
POLICY_CONFIG = "policy.json"
POLICY_WEIGHTS = "policy.safetensors"
# a policy folder may instead hold an ensemble: ENSEMBLE_CONFIG lists its members, each a policy
# folder under ENSEMBLE_MEMBERS/ (wm-train-policy ensemble=K)
ENSEMBLE_CONFIG = "ensemble.json"
ENSEMBLE_MEMBERS = "members"


@dataclass(frozen=True)
class PolicyConfig:
    """Sizes of a :class:`GoalPolicy`: ``tokens`` x ``dim`` latents (the world model's pooled
    grid), ``state_dim``/``action_dim`` (its layout); ``proj`` dims per token, ``hidden``
    units, ``dropout`` in training. ``encoder`` records the frozen encoder's identity, so a
    policy is never run on another encoder's latents. ``pooled``: its latents are the ones the
    predictor sees (``WorldModel.encode``) or the encoder's full grid (``pooled=False``: 4x the
    tokens of a 2x2 pool, finer positions for a grasp)."""

    tokens: int
    dim: int
    state_dim: int
    action_dim: int
    proj: int = 32
    hidden: int = 512
    depth: int = 2
    dropout: float = 0.1
    encoder: str = ""
    pooled: bool = True  # the predictor's pooled grid (True) or the encoder's full token grid

    def __post_init__(self) -> None:
        for name in ("tokens", "dim", "state_dim", "action_dim", "proj", "hidden", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PolicyConfig.{name} must be an integer >= 1, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"PolicyConfig.dropout must lie in [0, 1), got {self.dropout}")


class GoalPolicy(nn.Module):
    """See the module docstring."""

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.now = nn.Linear(cfg.dim, cfg.proj)
        self.goal = nn.Linear(cfg.dim, cfg.proj)
        width = 2 * cfg.tokens * cfg.proj + cfg.state_dim
        layers: list[nn.Module] = []
        for _ in range(cfg.depth):
            layers += [nn.Linear(width, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout)]
            width = cfg.hidden
        self.mlp = nn.Sequential(*layers, nn.Linear(width, cfg.action_dim))
        self.register_buffer("action_mean", torch.zeros(cfg.action_dim))
        self.register_buffer("action_std", torch.ones(cfg.action_dim))

    def set_action_stats(self, mean: Tensor, std: Tensor) -> None:
        """The training actions' per-dim mean and std (std floored at 1e-3)."""
        self.action_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.action_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp(min=1e-3))

    def normalized(self, z: Tensor, z_goal: Tensor, state: Tensor) -> Tensor:
        """(B, A) actions in training-normalized units (what the loss compares)."""
        cfg = self.cfg
        if z.shape[1:] != (cfg.tokens, cfg.dim) or z_goal.shape != z.shape:
            raise ValueError(
                f"GoalPolicy takes latents (B, {cfg.tokens}, {cfg.dim}) for the frame and the "
                f"goal, got {tuple(z.shape)} and {tuple(z_goal.shape)}"
            )
        if state.shape != (z.shape[0], cfg.state_dim):
            raise ValueError(
                f"GoalPolicy takes states (B, {cfg.state_dim}), got {tuple(state.shape)}"
            )
        x = torch.cat([self.now(z).flatten(1), self.goal(z_goal).flatten(1), state], dim=1)
        return self.mlp(x)

    def forward(self, z: Tensor, z_goal: Tensor, state: Tensor) -> Tensor:
        """(B, A) actions in the robot's units."""
        return self.normalized(z, z_goal, state) * self.action_std + self.action_mean

    # ------------------------------------------------------------------ files
    def save(self, folder: str | Path) -> None:
        """``policy.json`` + ``policy.safetensors`` in ``folder`` (written atomically)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (POLICY_WEIGHTS + ".tmp")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
                  str(tmp))  # fmt: skip
        tmp.replace(folder / POLICY_WEIGHTS)
        tmp = folder / (POLICY_CONFIG + ".tmp")
        tmp.write_text(json.dumps({"format_version": 1, **asdict(self.cfg)}, indent=2))
        tmp.replace(folder / POLICY_CONFIG)

    @classmethod
    def load(cls, folder: str | Path, encoder: str | None = None) -> GoalPolicy:
        """A saved policy; ``encoder``: the identity of the encoder whose latents it will see
        (``FrozenEncoder.identity()``), refused when it differs from the recorded one.

        Raises:
            CheckpointError: a file is missing, corrupt, not this format, holds NaN/inf, or the
                policy was trained on another encoder's latents.
        """
        from worldmodel.checkpoints.strict import (
            load_state_strict,
            read_json_object,
            read_safetensors,
        )

        folder = Path(folder)
        cfg_path, w_path = folder / POLICY_CONFIG, folder / POLICY_WEIGHTS
        for path in (cfg_path, w_path):
            if not path.is_file():
                raise CheckpointError(f"{path} not found: train a policy with wm-train-policy")
        raw = read_json_object(cfg_path, "policy config")
        if raw.pop("format_version", None) != 1:
            raise CheckpointError(f"{cfg_path}: not a policy config (format_version 1)")
        try:
            cfg = PolicyConfig(**raw)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"{cfg_path}: {err}") from err
        if encoder is not None and cfg.encoder and cfg.encoder != encoder:
            raise CheckpointError(
                f"{cfg_path}: the policy was trained on the latents of encoder {cfg.encoder}, "
                f"this model's encoder is {encoder}; retrain it with wm-train-policy"
            )
        policy = cls(cfg)
        load_state_strict(policy, read_safetensors(w_path), str(w_path), what="policy")
        return policy.eval()


class PolicyEnsemble(nn.Module):
    """The mean action of ``members`` (GoalPolicy with the same latents, state and action sizes
    and encoder); ``cfg`` is the first member's (what callers read: sizes, ``pooled``)."""

    def __init__(self, members: list[GoalPolicy]) -> None:
        super().__init__()
        if not members:
            raise ValueError("PolicyEnsemble needs at least one member")
        shared = ("tokens", "dim", "state_dim", "action_dim", "encoder", "pooled")
        first = members[0].cfg
        for k, member in enumerate(members[1:], start=1):
            for name in shared:
                if getattr(member.cfg, name) != getattr(first, name):
                    raise ValueError(
                        f"PolicyEnsemble: member {k} has {name}={getattr(member.cfg, name)!r}, "
                        f"member 0 {getattr(first, name)!r}"
                    )
        self.members = nn.ModuleList(members)
        self.cfg = first

    def forward(self, z: Tensor, z_goal: Tensor, state: Tensor) -> Tensor:
        """(B, A) mean of the members' actions, in the robot's units."""
        return torch.stack([m(z, z_goal, state) for m in self.members]).mean(dim=0)

    def save(self, folder: str | Path) -> None:
        """Each member into ``folder/members/<k>/``, then ``ensemble.json`` naming them (last,
        so a folder with it is complete); a single policy's files there are removed."""
        folder = Path(folder)
        names = [f"{ENSEMBLE_MEMBERS}/{k}" for k in range(len(self.members))]
        for name, member in zip(names, self.members, strict=True):
            member.save(folder / name)
        tmp = folder / (ENSEMBLE_CONFIG + ".tmp")
        tmp.write_text(json.dumps({"format_version": 1, "members": names}, indent=2))
        tmp.replace(folder / ENSEMBLE_CONFIG)
        for name in (POLICY_CONFIG, POLICY_WEIGHTS):
            (folder / name).unlink(missing_ok=True)


def is_policy_folder(folder: str | Path) -> bool:
    """True when ``folder`` holds a policy or an ensemble (its config file exists)."""
    folder = Path(folder)
    return (folder / ENSEMBLE_CONFIG).is_file() or (folder / POLICY_CONFIG).is_file()


def save_goal_policy(policy: GoalPolicy | PolicyEnsemble, folder: str | Path) -> None:
    """Save either kind into ``folder``, replacing the other kind (a nested ``proposal/`` is
    left alone). At every moment the folder loads as the old or the new policy, or (between
    removing an old ensemble's config and writing the new one) not at all: never as a mix."""
    import shutil

    folder = Path(folder)
    if isinstance(policy, PolicyEnsemble):
        (folder / ENSEMBLE_CONFIG).unlink(missing_ok=True)  # before its members go
        shutil.rmtree(folder / ENSEMBLE_MEMBERS, ignore_errors=True)
        policy.save(folder)  # members, then ensemble.json, then the single files go
        return
    policy.save(folder)  # while ensemble.json exists the old ensemble still loads
    (folder / ENSEMBLE_CONFIG).unlink(missing_ok=True)
    shutil.rmtree(folder / ENSEMBLE_MEMBERS, ignore_errors=True)


def ensemble_members(folder: str | Path) -> list[Path] | None:
    """The member folders ``folder/ensemble.json`` lists (None: no ensemble there).
    CheckpointError when the file is not an ensemble config or names a folder outside."""
    from worldmodel.checkpoints.strict import read_json_object

    folder = Path(folder)
    path = folder / ENSEMBLE_CONFIG
    if not path.is_file():
        return None
    raw = read_json_object(path, "policy ensemble")
    names = raw.get("members")
    if raw.get("format_version") != 1 or not isinstance(names, list) or not names:
        raise CheckpointError(f"{path}: not a policy ensemble (format_version 1, members: [...])")
    for name in names:
        if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
            raise CheckpointError(f"{path}: member {name!r} is not a folder inside {folder}")
    return [folder / name for name in names]


def load_goal_policy(folder: str | Path, encoder: str | None = None) -> GoalPolicy | PolicyEnsemble:
    """The policy or the ensemble in ``folder`` (``ensemble.json`` first), each member checked
    as :meth:`GoalPolicy.load` does. CheckpointError names the file that is missing, corrupt or
    does not fit."""
    folder = Path(folder)
    members = ensemble_members(folder)
    if members is None:
        return GoalPolicy.load(folder, encoder=encoder)
    policies = [GoalPolicy.load(member, encoder=encoder) for member in members]
    try:
        return PolicyEnsemble(policies).eval()
    except ValueError as err:
        raise CheckpointError(f"{folder / ENSEMBLE_CONFIG}: {err}") from err
