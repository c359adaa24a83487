"""wm-train-policy: a goal-conditioned policy head on a world model's frozen latents (#25).

Behaviour cloning on an episode dataset and its feature cache (the ones ``wm-cache`` made
with the model's encoder and views): each sample is (frame t's latent, a goal latent, state
t) -> the recorded action t. The goal is the episode's last frame (``final_goal_frac``; only
episodes that end in success when ``successful_only``) or a frame 1..``hindsight_max`` steps
later (hindsight), so one policy serves final goal images and nearer ones. ``corrections``:
folders of ``wm-dagger`` (states the policy itself visited, each labelled with the expert's
action toward the rollout's goal image); a ``corrections_frac`` share of each batch is drawn
from them (DAgger).

    wm-train-policy model=models/shipped data_root=runs/demos/data cache_dir=runs/demos/features

writes ``policy.json`` + ``policy.safetensors`` into ``out_dir`` beside ``log.csv`` and the
training checkpoint (written every ``ckpt_every`` steps; a rerun resumes from it), and with
``install=true`` copies the two files into ``<model>/policy/``, where wm-eval and wm-demo look
for a model's policy (with ``proposal=true`` into ``<model>/policy/proposal/``, where wm-eval's
``wm_pcem`` looks for the planner's proposal, typically trained with ``final_goal_frac=0.5``).
``ensemble=K``: K policies with seeds ``seed .. seed+K-1`` (each its own held-out episodes)
in ``out_dir/members/<k>/``, used as one (their mean action; ``ensemble.json``).
``modes``: keep only episodes whose recorded ``expert_mode`` is
listed (wm-collect records it; imported data has none, then every episode is kept).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from worldmodel.config import from_mapping, plain_defaults, run_cli
from worldmodel.errors import DatasetError
from worldmodel.models.policy import (
    ENSEMBLE_CONFIG,
    ENSEMBLE_MEMBERS,
    POLICY_DIR,
    PROPOSAL_DIR,
    GoalPolicy,
    PolicyConfig,
    PolicyEnsemble,
    save_goal_policy,
)


@dataclass(frozen=True)
class PolicyTrainConfig:
    """Options of wm-train-policy (see the module docstring)."""

    model: str = ""  # world model folder: its encoder, pooling, views and layout
    # a dataset, or several (e.g. one per task) each with its cache: data_root=[a,b]
    # cache_dir=[fa,fb]; a cache is wm-cache of its data_root with the model's encoder and views
    data_root: str | tuple[str, ...] = ""
    cache_dir: str | tuple[str, ...] = ""
    out_dir: str = "runs/policy"  # checkpoint, log and the trained policy
    install: bool = False  # also copy the policy into <model>/policy/
    proposal: bool = False  # it is the planner's proposal: install into <model>/policy/proposal/
    modes: tuple[str, ...] = ()  # e.g. [expert, noisy]; () keeps every episode
    successful_only: bool = True  # final goals only from episodes that end in success
    final_goal_frac: float = 1.0  # share of samples whose goal is the episode's last frame
    hindsight_max: int = 16  # other samples: a frame 1..hindsight_max steps later
    corrections: tuple[str, ...] = ()  # wm-dagger out_dirs
    corrections_frac: float = 0.5  # share of each batch from them (when given)
    steps: int = 20000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 200
    proj: int = 32
    hidden: int = 512
    depth: int = 2
    dropout: float = 0.1
    pooled: bool = True  # false: the encoder's full token grid (PolicyConfig.pooled)
    val_fraction: float = 0.1
    eval_every: int = 500
    ckpt_every: int = 500
    seed: int = 0
    ensemble: int = 1  # K > 1: K policies (seeds seed..seed+K-1) whose mean action is used
    threads: int = 0  # torch threads; 0: torch's default

    def __post_init__(self) -> None:
        for name in ("data_root", "cache_dir"):
            value = getattr(self, name)
            if not isinstance(value, str):
                object.__setattr__(self, name, tuple(str(v) for v in value))
        object.__setattr__(self, "modes", tuple(str(m) for m in self.modes))
        object.__setattr__(self, "corrections", tuple(str(c) for c in self.corrections))
        for name in ("final_goal_frac", "corrections_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        positive = ("steps", "batch_size", "hindsight_max", "eval_every", "ckpt_every", "ensemble")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def sources(self) -> list[tuple[str, str]]:
        """(data_root, cache_dir) pairs; ValueError when the two lists differ in length."""
        roots = [self.data_root] if isinstance(self.data_root, str) else list(self.data_root)
        caches = [self.cache_dir] if isinstance(self.cache_dir, str) else list(self.cache_dir)
        if len(roots) != len(caches) or not all(roots) or not all(caches):
            raise ValueError(
                f"wm-train-policy: data_root={roots} and cache_dir={caches} must pair up, one "
                "cache for each dataset"
            )
        return list(zip(roots, caches, strict=True))


class Demonstrations:
    """Pooled latents (float16), states and actions of the kept episodes, in memory."""

    def __init__(self, cfg: PolicyTrainConfig, model) -> None:
        from worldmodel.data.episodes import open_dataset
        from worldmodel.training.corrections import load_corrections
        from worldmodel.training.feature_cache import FeatureCache
        from worldmodel.training.train_data import check_cache_matches

        self.latents, self.states, self.actions, self.valid = [], [], [], []
        self.succeeded: list[bool] = []
        grid = model.predictor.cfg.input_grid
        sources = cfg.sources()
        roots = [root for root, _ in sources]
        for root, cache_dir in sources:
            dataset = open_dataset(root)
            cache = FeatureCache(cache_dir, model.encoder.identity())
            check_cache_matches(cache, dataset, cache_dir)
            if cache.tokens_per_frame != grid[0] * grid[1]:
                raise DatasetError(
                    f"{cache_dir}: {cache.tokens_per_frame} tokens a frame, the model's views "
                    f"{list(model.views)} make {grid[0] * grid[1]}: cache the data with "
                    f"views={'+'.join(model.views)}"
                )
            for ep in tqdm(range(len(dataset)), desc=f"wm-train-policy: {root}", leave=False):
                steps = dataset.steps(ep)
                mode = steps.extra.get("expert_mode")
                if cfg.modes and mode is not None and str(mode) not in cfg.modes:
                    continue
                if not steps.action_valid.any():  # a single frame: nothing to imitate
                    continue
                with torch.no_grad():
                    f = torch.from_numpy(np.asarray(cache.features(ep), np.float32))
                    self.latents.append(model.latents(f, cfg.pooled).half())
                self.states.append(torch.from_numpy(steps.state.astype(np.float32)))
                self.actions.append(torch.from_numpy(steps.action.astype(np.float32)))
                self.valid.append(np.flatnonzero(steps.action_valid))
                self.succeeded.append(bool(steps.is_success[-1]))
        if not self.latents:
            raise DatasetError(
                f"{', '.join(roots)}: no episode has an expert_mode in modes={list(cfg.modes)}"
            )
        if cfg.successful_only and cfg.final_goal_frac > 0 and not any(self.succeeded):
            raise DatasetError(
                f"{', '.join(roots)}: no kept episode ends in success (steps.npz is_success), "
                "so none gives a final goal; set successful_only=false or final_goal_frac=0"
            )
        self.tokens, self.dim = self.latents[0].shape[1:]
        self.corrections = []
        for folder in cfg.corrections:
            for ep in load_corrections(folder, model.encoder.identity()):
                if ep["z"].shape[1:] != (self.tokens, self.dim):
                    raise DatasetError(
                        f"{folder}: latents of {ep['z'].shape[1:]}, the cache's are "
                        f"{(self.tokens, self.dim)}"
                    )
                self.corrections.append({k: torch.from_numpy(np.asarray(ep[k]))
                                         for k in ("z", "goal", "state", "label")})  # fmt: skip

    def __len__(self) -> int:
        return len(self.latents)

    def action_stats(self, episodes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        acts = torch.cat([self.actions[e][self.valid[e]] for e in episodes])
        return acts.mean(0), acts.std(0)

    def sample(self, episodes: np.ndarray, corrections: np.ndarray, n: int,
               cfg: PolicyTrainConfig, rng: np.random.Generator):  # fmt: skip
        """n samples: (z, z_goal, state, action) from demonstrations ``episodes`` and, a
        ``cfg.corrections_frac`` share, from the rollouts ``corrections`` (indices)."""
        finals = [e for e in episodes if self.succeeded[e] or not cfg.successful_only]
        z, goal, state, action = [], [], [], []
        for _ in range(n):
            if len(corrections) and (not len(episodes) or rng.random() < cfg.corrections_frac):
                ep = self.corrections[int(rng.choice(corrections))]
                t = int(rng.integers(len(ep["z"])))
                z.append(ep["z"][t])
                goal.append(ep["goal"])
                state.append(ep["state"][t])
                action.append(ep["label"][t])
                continue
            use_final = bool(finals) and rng.random() < cfg.final_goal_frac
            e = int(rng.choice(finals if use_final else episodes))
            t = int(rng.choice(self.valid[e]))
            last = len(self.latents[e]) - 1
            g = last if use_final else min(last, t + int(rng.integers(1, cfg.hindsight_max + 1)))
            z.append(self.latents[e][t])
            goal.append(self.latents[e][g])
            state.append(self.states[e][t])
            action.append(self.actions[e][t])
        return (torch.stack(z).float(), torch.stack(goal).float(), torch.stack(state),
                torch.stack(action))  # fmt: skip


def _lr(cfg: PolicyTrainConfig, step: int) -> float:
    warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
    return cfg.lr * warm * 0.5 * (1.0 + math.cos(math.pi * step / cfg.steps))


def train_policy(cfg: PolicyTrainConfig) -> dict:
    """Train (or resume) and save the policy (or ``ensemble`` of them); returns the last
    losses (of the last member)."""
    from worldmodel.world_model import WorldModel

    if not (cfg.model and cfg.data_root and cfg.cache_dir):
        raise ValueError("wm-train-policy needs model=, data_root= and cache_dir=")
    cfg.sources()  # they pair up
    out = Path(cfg.out_dir)
    target = None  # the install folder
    if cfg.install:
        target = Path(cfg.model) / POLICY_DIR
        target = target / PROPOSAL_DIR if cfg.proposal else target
        if out.resolve() == target.resolve():  # installing would replace its own checkpoints
            raise ValueError(
                f"wm-train-policy: out_dir={cfg.out_dir} is the install folder {target}; "
                "train into another folder (install=true copies the policy there)"
            )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model = WorldModel.load(cfg.model)
    demos = Demonstrations(cfg, model)
    if cfg.ensemble == 1:
        policy, report = _train_one(cfg, model, demos, out)
        (out / ENSEMBLE_CONFIG).unlink(missing_ok=True)  # an earlier ensemble=K run's
    else:  # each member in its own folder (checkpoint, log.csv): a rerun resumes where it stopped
        members = []
        for k in range(cfg.ensemble):
            print(f"wm-train-policy: ensemble member {k + 1} of {cfg.ensemble}")
            member_out = out / ENSEMBLE_MEMBERS / str(k)
            member, report = _train_one(replace(cfg, seed=cfg.seed + k), model, demos, member_out)
            members.append(member)
        policy = PolicyEnsemble(members)
        policy.save(out)
    if target is not None:
        save_goal_policy(policy, target)
        print(f"wm-train-policy: installed the policy in {target}")
    return report


def _train_one(
    cfg: PolicyTrainConfig, model, demos: Demonstrations, out: Path
) -> tuple[GoalPolicy, dict]:
    """Train (or resume) one policy with ``cfg.seed`` into ``out``; it is saved there."""
    from worldmodel.training.run_io import (
        CHECKPOINT_NAME,
        _append_csv,
        _truncate_csv,
        atomic_torch_save,
        load_training_checkpoint,
    )

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(demos))
    n_val = round(cfg.val_fraction * len(demos)) if len(demos) > 1 else 0
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    none = np.zeros(0, np.int64)
    corr_val, corr_train = none, none
    if demos.corrections:  # held-out rollouts too: their loss shows memorized goals
        corr_order = rng.permutation(len(demos.corrections))
        n_cval = round(cfg.val_fraction * len(corr_order)) if len(corr_order) > 1 else 0
        corr_val, corr_train = np.sort(corr_order[:n_cval]), np.sort(corr_order[n_cval:])
    torch.manual_seed(cfg.seed)
    pcfg = PolicyConfig(
        tokens=int(demos.tokens), dim=int(demos.dim), state_dim=model.state_dim,
        action_dim=model.action_dim, proj=cfg.proj, hidden=cfg.hidden, depth=cfg.depth,
        dropout=cfg.dropout, encoder=model.encoder.identity(), pooled=cfg.pooled,
    )  # fmt: skip
    policy = GoalPolicy(pcfg)
    policy.set_action_stats(*demos.action_stats(list(train)))
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start = 0
    state = load_training_checkpoint(
        out, required=("policy", "opt", "step", "rng", "torch_rng", "config")
    )
    if state is not None:
        if int(state.get("steps", -1)) != cfg.steps:
            raise ValueError(
                f"{out / CHECKPOINT_NAME}: that run's learning-rate schedule spans "
                f"{state.get('steps')} steps, this one {cfg.steps}: rerun with "
                f"steps={state.get('steps')} to resume it, or choose another out_dir"
            )
        if state["config"] != asdict(pcfg):
            raise ValueError(
                f"{out / CHECKPOINT_NAME}: a run with other sizes or another encoder; "
                "move it away or choose another out_dir"
            )
        policy.load_state_dict(state["policy"])
        opt.load_state_dict(state["opt"])
        start = int(state["step"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])  # dropout masks
        print(f"wm-train-policy: resuming {out} at step {start} of {cfg.steps}")
        _truncate_csv(out / "log.csv", start)  # written after the last checkpoint
    log_path = out / "log.csv"
    report: dict = {}
    t0 = time.perf_counter()
    val_rng = np.random.default_rng(cfg.seed + 1)
    val_batches = {
        name: demos.sample(eps, corr, 1024, cfg, val_rng)
        for name, eps, corr in (("val_loss", val, none), ("val_corrections_loss", none, corr_val))
        if len(eps) or len(corr)
    }
    bar = tqdm(range(start, cfg.steps), desc="wm-train-policy", initial=start, total=cfg.steps)
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = _lr(cfg, step)
        z, goal, st, act = demos.sample(train, corr_train, cfg.batch_size, cfg, rng)
        policy.train()
        target = (act - policy.action_mean) / policy.action_std
        loss = ((policy.normalized(z, goal, st) - target) ** 2).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"wm-train-policy: non-finite loss at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            report = {"step": done, "loss": loss.item(), "seconds": time.perf_counter() - t0}
            policy.eval()
            for name, (z, goal, st, act) in val_batches.items():
                with torch.no_grad():
                    vt = (act - policy.action_mean) / policy.action_std
                    report[name] = float(((policy.normalized(z, goal, st) - vt) ** 2).mean())
            _append_csv(log_path, report)
            tqdm.write(f"wm-train-policy: { {k: round(v, 4) for k, v in report.items()} }")
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            atomic_torch_save(
                {"policy": policy.state_dict(), "opt": opt.state_dict(), "step": done,
                 "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                 "steps": cfg.steps, "config": asdict(pcfg)},
                out / CHECKPOINT_NAME,
            )  # fmt: skip
    policy.eval()
    policy.save(out)
    return policy, report


def config_from_mapping(raw: dict) -> PolicyTrainConfig:
    return from_mapping(PolicyTrainConfig, raw)


def main() -> None:
    """Hydra entry point (``configs/policy.yaml`` over the PolicyTrainConfig defaults)."""
    run_cli("policy", config_from_mapping, _run, plain_defaults(PolicyTrainConfig))


def _run(cfg: PolicyTrainConfig) -> None:
    print(train_policy(cfg))


if __name__ == "__main__":
    main()
