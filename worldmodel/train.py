"""wm-train: train the AC predictor on frozen features (teacher forcing + rollout L1).

Per clip of T frames: latents z_0..z_{T-1} (pooled, layer-normed) with actions/states.
Teacher forcing predicts z_{t+1} from true z_{<=t}; the rollout starts at z_0 and feeds back
k-1 of its own (layer-normed) predictions, with the recorded states, as published. Both losses
are L1 on layer-normed targets. Validation (episodes held out) also scores the copy-last
baseline (predict the last seen latent). Runs in one process or under ``torchrun`` (DDP: each
rank takes its slice of the same global batch). Checkpoints are atomic and resumable.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from worldmodel.predictor import PREDICTOR_PRESETS, ACPredictor


@dataclass(frozen=True)
class TrainConfig:
    """Options of wm-train. Paths: ``data_root`` (episode format), ``cache_root`` (FeatureCache;
    ``mode="cached"``), ``encoder_dir`` (FrozenEncoder folder: identity of the cache, or the
    encoder itself for ``mode="on_the_fly"``), ``out_dir`` (logs, checkpoints, world model)."""

    data_root: str = ""
    cache_root: str = ""
    encoder_dir: str = ""
    out_dir: str = "runs/predictor"
    mode: str = "cached"
    predictor: str = "tiny"
    pool_kernel: int = 0  # 0: keep the preset's
    clip_len: int = 8
    rollout_steps: int = 2
    batch_size: int = 16  # global, over all ranks
    max_steps: int = 2000
    lr: float = 4.25e-4
    start_lr: float = 7.5e-5
    final_lr: float = 0.0
    warmup_steps: int = 100
    decay_steps: int = 100
    weight_decay: float = 0.04
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    val_fraction: float = 0.1
    eval_every: int = 200
    eval_batches: int = 8
    ckpt_every: int = 200
    seed: int = 0
    device: str = "cpu"
    bf16: bool = False
    resume: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("cached", "on_the_fly"):
            raise ValueError(f"TrainConfig.mode must be 'cached' or 'on_the_fly', got {self.mode}")
        if self.predictor not in PREDICTOR_PRESETS:
            raise ValueError(
                f"TrainConfig.predictor {self.predictor!r} not in {list(PREDICTOR_PRESETS)}"
            )
        if not 1 <= self.rollout_steps <= self.clip_len - 1:
            raise ValueError(
                f"TrainConfig.rollout_steps must be in [1, clip_len-1], got {self.rollout_steps}"
            )
        for name in ("batch_size", "max_steps", "eval_every", "ckpt_every", "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"TrainConfig.val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.warmup_steps < 0 or self.decay_steps < 0 or self.lr <= 0 or self.grad_clip <= 0:
            raise ValueError("TrainConfig: warmup/decay steps >= 0, lr > 0, grad_clip > 0 required")


def layer_norm(z: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.layer_norm(z, z.shape[-1:], eps=1e-6)


def clip_losses(model, z, actions, states, rollout_steps: int) -> tuple[torch.Tensor, list]:
    """Teacher-forcing and per-step rollout L1 losses of one batch.

    Args:
        model: ACPredictor (or DDP-wrapped); z: (B, T, N, D) layer-normed latents;
            actions, states: (B, T, 7).

    Returns:
        (tf_loss, [rollout loss at step 1..k]) scalars.
    """
    predictor = model.module if isinstance(model, DistributedDataParallel) else model
    cache = predictor.new_cache()
    tf = layer_norm(model(z[:, :-1], actions[:, :-1], states[:, :-1], cache=cache))  # (B,T-1,N,D)
    tf_loss = (tf - z[:, 1:]).abs().mean()
    roll = [(tf[:, 0] - z[:, 1]).abs().mean()]  # step 1 is the teacher-forced step 0 output
    cache = cache.truncated(1)
    z_hat = tf[:, :1]  # (B, 1, N, D)
    for n in range(1, rollout_steps):
        z_hat = layer_norm(model(z_hat, actions[:, n : n + 1], states[:, n : n + 1], cache=cache))
        roll.append((z_hat[:, 0] - z[:, n + 1]).abs().mean())
    return tf_loss, roll


# ---------------------------------------------------------------------------------------------
# Data: windows of clip_len frames, split by episode, resumable shuffled order.


def split_episodes(num_episodes: int, val_fraction: float, seed: int) -> tuple[list, list]:
    """Seeded split of episode indices into (train, val); val gets >= 1 episode."""
    if num_episodes < 2:
        raise ValueError(f"need >= 2 episodes for a train/val split, got {num_episodes}")
    order = np.random.default_rng(seed).permutation(num_episodes)
    n_val = min(num_episodes - 1, max(1, round(val_fraction * num_episodes)))
    return sorted(order[n_val:].tolist()), sorted(order[:n_val].tolist())


def window_refs(source, episodes: list[int], clip_len: int) -> np.ndarray:
    """(M, 2) int array of (episode, start) for every clip that fits inside an episode."""
    refs = [
        (ep, start) for ep in episodes for start in range(source.episode_length(ep) - clip_len + 1)
    ]
    if not refs:
        raise ValueError(f"no episode among {episodes[:5]}... has >= clip_len={clip_len} frames")
    return np.asarray(refs, dtype=np.int64)


class ClipSampler:
    """Global batches from a per-epoch seeded permutation; state = (epoch, cursor)."""

    def __init__(self, refs: np.ndarray, batch_size: int, seed: int) -> None:
        self.refs, self.batch_size, self.seed = refs, batch_size, seed
        self.epoch, self.cursor = 0, 0
        self._order = self._permutation()

    def _permutation(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.refs))

    def next_batch(self) -> np.ndarray:
        """(batch_size, 2) refs; wraps into the next epoch's permutation when needed."""
        picked = []
        while len(picked) < self.batch_size:
            if self.cursor >= len(self._order):
                self.epoch, self.cursor = self.epoch + 1, 0
                self._order = self._permutation()
            take = min(self.batch_size - len(picked), len(self._order) - self.cursor)
            picked.extend(self._order[self.cursor : self.cursor + take].tolist())
            self.cursor += take
        return self.refs[picked]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._order = self._permutation()


class EpisodeSource:
    """Clips of an episode dataset as predictor inputs: cached features or on-the-fly encoding.

    ``features(ep)`` (cached mode) returns (T, h*w, D) arrays; otherwise frames are decoded and
    encoded with ``encoder.encode_frames`` in one call per batch.
    """

    def __init__(self, dataset, encoder, features=None) -> None:
        self.dataset, self.encoder, self.features = dataset, encoder, features
        self.num_episodes = len(dataset)
        self.feature_dim, self.grid = int(encoder.embed_dim), tuple(encoder.grid)

    def episode_length(self, ep: int) -> int:
        return self.dataset.episode_length(ep)

    def batch(self, refs: np.ndarray, clip_len: int, predictor: ACPredictor, device):
        """-> z (B, T, N, D) pooled + layer-normed, actions (B, T, 7), states (B, T, 7)."""
        states, actions, feats = [], [], []
        for ep, start in refs.tolist():
            table = self.dataset.steps(ep)
            states.append(table.state[start : start + clip_len])
            actions.append(table.action[start : start + clip_len])
            if self.features is not None:
                feats.append(np.asarray(self.features(ep)[start : start + clip_len], np.float32))
        if self.features is not None:
            z = torch.from_numpy(np.stack(feats)).to(device)  # (B, T, h*w, D)
        else:
            frames = np.stack(
                [self.dataset.read_clip(ep, st, clip_len).frames for ep, st in refs.tolist()]
            )  # (B, T, H, W, 3)
            b = frames.shape[0]
            z = self.encoder.encode_frames(frames.reshape(b * clip_len, *frames.shape[2:]))
            z = z.to(device).view(b, clip_len, *z.shape[1:])  # (B, T, h*w, D)
        z = layer_norm(predictor.pool(z.float()))
        to = lambda x: torch.from_numpy(np.stack(x)).to(device, torch.float32)  # noqa: E731
        return z, to(actions), to(states)

    def save_world_model(self, predictor: ACPredictor, folder: Path) -> None:
        from worldmodel.world_model import WorldModel

        WorldModel(self.encoder, predictor.cpu()).save(folder)


def build_source(cfg: TrainConfig) -> EpisodeSource:
    """Dataset + frozen encoder (+ feature cache in cached mode) from the config's paths."""
    from worldmodel.data.episodes import open_dataset
    from worldmodel.frozen import FrozenEncoder

    if not cfg.data_root or not cfg.encoder_dir:
        raise ValueError("TrainConfig.data_root and TrainConfig.encoder_dir are required")
    dataset = open_dataset(cfg.data_root)
    encoder = FrozenEncoder.load(cfg.encoder_dir, device=cfg.device)
    if cfg.mode == "on_the_fly":
        return EpisodeSource(dataset, encoder)
    if not cfg.cache_root:
        raise ValueError("TrainConfig.cache_root is required in mode='cached'")
    from worldmodel.feature_cache import FeatureCache

    cache = FeatureCache(cfg.cache_root, encoder.identity())
    return EpisodeSource(dataset, encoder, features=cache.features)


# ---------------------------------------------------------------------------------------------
# Schedule, evaluation, logging, checkpoints.


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Warmup (start_lr -> lr, linear), hold at lr, final linear decay to final_lr; / lr."""
    if step < cfg.warmup_steps:
        lr = cfg.start_lr + (cfg.lr - cfg.start_lr) * step / cfg.warmup_steps
    elif step >= cfg.max_steps - cfg.decay_steps and cfg.decay_steps > 0:
        frac = (step - (cfg.max_steps - cfg.decay_steps)) / cfg.decay_steps
        lr = cfg.lr + (cfg.final_lr - cfg.lr) * min(1.0, frac)
    else:
        lr = cfg.lr
    return lr / cfg.lr


@torch.no_grad()
def evaluate(predictor: ACPredictor, source, refs: np.ndarray, cfg: TrainConfig, device) -> dict:
    """Validation losses of the model and of copy-last, on fixed, evenly spaced val clips."""
    predictor.eval()
    k = cfg.rollout_steps
    picks = np.linspace(0, len(refs) - 1, min(len(refs), cfg.eval_batches * cfg.batch_size))
    picks = refs[np.unique(picks.round().astype(int))]
    sums = np.zeros(2 + 2 * k)
    for i in range(0, len(picks), cfg.batch_size):
        z, actions, states = source.batch(
            picks[i : i + cfg.batch_size], cfg.clip_len, predictor, device
        )
        tf, roll = clip_losses(predictor, z, actions, states, k)
        copy_tf = (z[:, :-1] - z[:, 1:]).abs().mean()
        copy_roll = [(z[:, 0] - z[:, n]).abs().mean() for n in range(1, k + 1)]
        vals = [tf, copy_tf, *roll, *copy_roll]
        sums += len(z) * np.array([float(v) for v in vals])
    predictor.train()
    m = sums / len(picks)
    report = {"val_tf": m[0], "copy_tf": m[1], "tf_ratio": m[0] / m[1]}
    for n in range(k):
        report[f"val_roll{n + 1}"] = m[2 + n]
        report[f"copy_roll{n + 1}"] = m[2 + k + n]
        report[f"roll{n + 1}_ratio"] = m[2 + n] / m[2 + k + n]
    return {key: float(v) for key, v in report.items()}


class RunLog:
    """tqdm bar, train/eval CSVs (truncated to the resume step) and a loss-curve PNG."""

    def __init__(self, out: Path, active: bool, resume_step: int) -> None:
        self.out, self.active = out, active
        self.train_csv, self.eval_csv = out / "train_log.csv", out / "eval_log.csv"
        if active:
            out.mkdir(parents=True, exist_ok=True)
            for path in (self.train_csv, self.eval_csv):
                _truncate_csv(path, resume_step)

    def progress(self, cfg: TrainConfig, step: int):
        from tqdm import tqdm

        enabled = self.active and cfg.progress
        return tqdm(total=cfg.max_steps, initial=step, disable=not enabled, desc="wm-train")

    def train_row(self, step: int, loss: float, gnorm: float, lr: float, bar) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        if self.active:
            _append_csv(self.train_csv, {"step": step, "loss": loss, "grad_norm": gnorm, "lr": lr})

    def eval_row(self, step: int, report: dict) -> None:
        if self.active:
            _append_csv(self.eval_csv, {"step": step, **report})
            self.plot()

    def plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for path, cols in ((self.train_csv, ["loss"]), (self.eval_csv, ["val_tf", "copy_tf"])):
            if path.is_file():
                data = np.genfromtxt(path, delimiter=",", names=True, ndmin=1)
                for col in cols:
                    ax.plot(data["step"], data[col], label=col)
        ax.set_xlabel("step")
        ax.set_ylabel("L1 loss")
        ax.legend()
        fig.savefig(self.out / "loss_curve.png", dpi=80)
        plt.close(fig)

    def finish(self, bar) -> None:
        bar.close()


def _append_csv(path: Path, row: dict) -> None:
    new = not path.is_file()
    with path.open("a") as f:
        if new:
            f.write(",".join(row) + "\n")
        f.write(",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values()))
        f.write("\n")


def _truncate_csv(path: Path, step: int) -> None:
    """Drop rows logged after ``step`` (work lost by a crash is redone after resume)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    kept = lines[:1] + [ln for ln in lines[1:] if int(float(ln.split(",")[0])) <= step]
    path.write_text("".join(ln + "\n" for ln in kept) if step > 0 else "")
    if step == 0:
        path.unlink()


CKPT_FILE = "checkpoint.pt"


def save_checkpoint(out: Path, predictor, opt, sched, sampler, step: int, cfg) -> None:
    """Atomic: write ``checkpoint.pt.tmp`` then ``os.replace``."""
    state = {
        "model": predictor.state_dict(),
        "predictor_config": dataclasses.asdict(predictor.cfg),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "step": step,
        "data": sampler.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        "train_config": dataclasses.asdict(cfg),
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (CKPT_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out / CKPT_FILE)


def load_checkpoint(out: Path, predictor, opt, sched, sampler) -> int:
    """Restore everything from ``out/checkpoint.pt`` if present; returns the step (0 if none)."""
    path = out / CKPT_FILE
    if not path.is_file():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=False)
    from worldmodel.checkpoints_predictor import load_state_strict

    load_state_strict(predictor, state["model"], str(path))
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    sampler.load_state_dict(state["data"])
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    if state["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return int(state["step"])


# ---------------------------------------------------------------------------------------------
# Training loop and entry point.


def _dist_info() -> tuple[int, int]:
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1:
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _param_groups(model: torch.nn.Module, wd: float) -> list[dict]:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def build_predictor(cfg: TrainConfig, feature_dim: int, grid: tuple[int, int]) -> ACPredictor:
    """Preset with the data's feature size and grid (and an optional pooling override)."""
    base = PREDICTOR_PRESETS[cfg.predictor]
    pool = cfg.pool_kernel or base.pool_kernel
    while pool > 1 and (grid[0] % pool or grid[1] % pool):
        pool //= 2
    pcfg = dataclasses.replace(
        base, encoder_dim=feature_dim, input_grid=tuple(grid), pool_kernel=pool
    )
    return ACPredictor(pcfg)


def train(cfg: TrainConfig, source=None) -> dict:
    """Run (or resume) training; returns the final validation report (rank 0; {} elsewhere).

    ``source`` (tests, benchmarks) replaces the data source built from ``cfg``.
    """
    rank, world = _dist_info()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} not divisible by world size {world}")
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    source = source if source is not None else build_source(cfg)
    train_eps, val_eps = split_episodes(source.num_episodes, cfg.val_fraction, cfg.seed)
    sampler = ClipSampler(window_refs(source, train_eps, cfg.clip_len), cfg.batch_size, cfg.seed)
    val_refs = window_refs(source, val_eps, cfg.clip_len)
    predictor = build_predictor(cfg, source.feature_dim, source.grid).to(device)
    predictor.extrinsics_encoder.requires_grad_(False)  # unused (as published); DDP needs grads
    model = DistributedDataParallel(predictor) if world > 1 else predictor
    opt = torch.optim.AdamW(_param_groups(predictor, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s))
    out = Path(cfg.out_dir)
    step = load_checkpoint(out, predictor, opt, sched, sampler) if cfg.resume else 0
    log = RunLog(out, rank == 0, resume_step=step)
    report: dict = {}
    bar = log.progress(cfg, step)
    while step < cfg.max_steps:
        refs = sampler.next_batch()[rank::world]  # this rank's slice of the global batch
        z, actions, states = source.batch(refs, cfg.clip_len, predictor, device)
        with torch.autocast(device.type, torch.bfloat16, enabled=cfg.bf16):
            tf_loss, roll = clip_losses(model, z, actions, states, cfg.rollout_steps)
            loss = tf_loss + torch.stack(roll).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(predictor.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        step += 1
        log.train_row(
            step, _mean_over_ranks(loss, world), float(gnorm), sched.get_last_lr()[0], bar
        )
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            report = evaluate(predictor, source, val_refs, cfg, device)
            log.eval_row(step, report)
        if rank == 0 and (step % cfg.ckpt_every == 0 or step == cfg.max_steps):
            save_checkpoint(out, predictor, opt, sched, sampler, step, cfg)
    log.finish(bar)
    if rank == 0 and step == cfg.max_steps:
        source.save_world_model(predictor, out / "world_model")
    if world > 1:
        dist.barrier()
    return report if rank == 0 else {}


def _mean_over_ranks(x: torch.Tensor, world: int) -> float:
    x = x.detach().float().clone()
    if world > 1:
        dist.all_reduce(x)
        x /= world
    return float(x)


def config_from_mapping(raw) -> TrainConfig:
    """TrainConfig from a Hydra/OmegaConf mapping (unknown keys rejected by the dataclass)."""
    values = dict(raw)
    if "betas" in values:
        values["betas"] = tuple(values["betas"])
    return TrainConfig(**values)


def main() -> None:
    import hydra
    from omegaconf import OmegaConf

    @hydra.main(version_base="1.3", config_path="../configs", config_name="train")
    def _run(hcfg) -> None:
        cfg = config_from_mapping(OmegaConf.to_container(hcfg, resolve=True))
        report = train(cfg)
        if report:
            print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in report.items()})

    _run()
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
