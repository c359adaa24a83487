"""wm-pretrain: V-JEPA mask-denoising pretraining of a (small) video encoder.

Context encoder sees only the context tokens; a narrow predictor fills mask tokens at the target
positions; the loss is L1 to the layer-normed features of an EMA target encoder (stop-grad) on
the full clip. AdamW, linear warmup + cosine LR, momentum ramp to 1. Runs unchanged under
``torchrun`` (DDP; gloo on CPU, nccl on GPU); rank 0 writes. Resumes from ``out_dir`` after any
kill. At the end the target encoder is exported as our checkpoint folder ``out_dir/encoder``.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from worldmodel.checkpoints.encoder import save_encoder
from worldmodel.checkpoints.strict import load_state_strict
from worldmodel.config import from_mapping, plain_defaults, run_cli
from worldmodel.data.clips import PreprocessedClips, open_clip_source
from worldmodel.errors import DatasetError
from worldmodel.models.encoder import ENCODER_PRESETS, EncoderConfig, VisionTransformer
from worldmodel.models.preprocess import PreprocessConfig
from worldmodel.training import run_io
from worldmodel.training.distributed import setup_distributed, stop_on_non_finite
from worldmodel.training.masking import (
    MaskPredictor,
    MaskPredictorConfig,
    MaskSpec,
    MultiBlockMasker,
)


def _default_masks() -> tuple[MaskSpec, ...]:
    return (MaskSpec(8, (0.15, 0.15)), MaskSpec(2, (0.7, 0.7)))


RENAMED = {"run_dir": "out_dir"}  # deprecated CLI names, accepted for one release


@dataclass(frozen=True)
class PretrainConfig:
    """Everything wm-pretrain needs; YAML only overrides these defaults."""

    data_root: str = ""
    out_dir: str = "runs/pretrain"
    encoder: EncoderConfig = ENCODER_PRESETS["vit_tiny_cpu"]
    predictor: MaskPredictorConfig = field(default_factory=MaskPredictorConfig)
    masks: tuple[MaskSpec, ...] = field(default_factory=_default_masks)
    num_frames: int = 4
    frame_stride: int = 1
    camera: str = "exterior"
    batch_size: int = 16
    total_steps: int = 2000
    stop_at_step: int = 0  # > 0: stop (after checkpointing) at this step; rerun resumes
    warmup_steps: int = 100
    lr: float = 5e-4
    final_lr: float = 1e-6
    weight_decay: float = 0.04
    grad_clip: float = 0.0
    ema_start: float = 0.996
    ema_end: float = 1.0
    checkpoint_every: int = 200
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    bf16: bool = True  # autocast on CUDA only

    def __post_init__(self) -> None:
        if not self.data_root:
            raise ValueError("PretrainConfig.data_root must be set (episode dataset or mp4 folder)")
        for name in ("num_frames", "frame_stride", "batch_size", "total_steps", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"PretrainConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.num_frames % self.encoder.tubelet_size:
            raise ValueError(f"PretrainConfig.num_frames {self.num_frames} not a tubelet multiple")
        if self.predictor.embed_dim != self.encoder.embed_dim:
            raise ValueError("PretrainConfig.predictor.embed_dim must equal encoder.embed_dim")
        if not 0 <= self.ema_start <= self.ema_end <= 1:
            raise ValueError(f"PretrainConfig needs 0 <= ema_start <= ema_end <= 1: {self}")
        if not self.masks:
            raise ValueError("PretrainConfig.masks must not be empty")

    @classmethod
    def from_dict(cls, d: dict) -> PretrainConfig:
        """Typed config from a plain (Hydra) mapping (:func:`worldmodel.config.from_mapping`):
        ``encoder`` a preset name or fields; the mask predictor always takes the encoder's
        width; ``run_dir`` is the deprecated name of ``out_dir``."""
        d = dict(d)
        encoder = d.get("encoder", cls.encoder)
        if isinstance(encoder, str):
            encoder = ENCODER_PRESETS.get(encoder)
        width = (
            encoder["embed_dim"] if isinstance(encoder, dict) else getattr(encoder, "embed_dim", 0)
        )
        d["predictor"] = {
            **dict(d.get("predictor") or {}),
            "embed_dim": width or cls.encoder.embed_dim,
        }
        return from_mapping(
            cls, d, presets={EncoderConfig: ENCODER_PRESETS}, renamed=RENAMED,
            where="wm-pretrain",
        )  # fmt: skip


class JepaStudent(nn.Module):
    """Context encoder + predictor; forward returns the mean L1 loss over all mask pairs."""

    def __init__(self, encoder: VisionTransformer, predictor: MaskPredictor) -> None:
        super().__init__()
        self.encoder = encoder
        self.predictor = predictor

    def forward(
        self, x: Tensor, masks: list[tuple[Tensor, Tensor]], targets: Tensor, grid: tuple
    ) -> Tensor:
        """x (B, 3, T, S, S); targets (B, N, D) layer-normed target features."""
        losses = []
        D = targets.shape[-1]
        for ctx_idx, tgt_idx in masks:
            z_ctx = self.encoder(x, keep_idx=ctx_idx)  # (B, Kc, D)
            pred = self.predictor(z_ctx, ctx_idx, tgt_idx, grid)  # (B, Kt, D)
            target = torch.gather(targets, 1, tgt_idx[..., None].expand(-1, -1, D))
            losses.append((pred.float() - target.float()).abs().mean())
        return torch.stack(losses).mean()


def lr_at(cfg: PretrainConfig, step: int) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.final_lr at total_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.total_steps - cfg.warmup_steps)
    return cfg.final_lr + 0.5 * (cfg.lr - cfg.final_lr) * (1 + math.cos(math.pi * progress))


def momentum_at(cfg: PretrainConfig, step: int) -> float:
    """EMA momentum ramped linearly from ema_start to ema_end."""
    return cfg.ema_start + (cfg.ema_end - cfg.ema_start) * step / cfg.total_steps


def _batches(dataset, cfg: PretrainConfig, rank: int, world: int, epoch: int, skip: int):
    """Deterministic per-(seed, epoch) shard of the data, skipping ``skip`` batches."""
    sampler = DistributedSampler(
        dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    sampler.set_epoch(epoch)
    indices = list(sampler)[skip * cfg.batch_size :]
    return iter(DataLoader(dataset, batch_size=cfg.batch_size, sampler=indices,
                           num_workers=cfg.num_workers, drop_last=True))  # fmt: skip


def build_models(cfg: PretrainConfig, device: torch.device):
    """(student, EMA target encoder, AdamW) freshly initialized from cfg.seed."""
    torch.manual_seed(cfg.seed)
    student = JepaStudent(VisionTransformer(cfg.encoder), MaskPredictor(cfg.predictor)).to(device)
    target = copy.deepcopy(student.encoder).requires_grad_(False)
    decay = [p for p in student.parameters() if p.ndim > 1]
    no_decay = [p for p in student.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.999),
    )  # fmt: skip
    return student, target, opt


def train_step(cfg: PretrainConfig, student: JepaStudent, target: VisionTransformer,
               model: nn.Module, opt: torch.optim.Optimizer, masker: MultiBlockMasker,
               x: Tensor, step: int, rank: int = 0) -> tuple[Tensor, float]:  # fmt: skip
    """One optimizer step on clips x (B, 3, T, S, S) + EMA update; returns (loss, momentum).

    ``model`` is ``student`` or its DDP wrapper. Masks come from a generator seeded by
    (seed, rank, step), so a resumed run draws exactly the masks of an uninterrupted one.
    """
    for group in opt.param_groups:
        group["lr"] = lr_at(cfg, step)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + rank * 7_919 + step)
    masks = [(c.to(x.device), t.to(x.device)) for c, t in masker(x.shape[0], gen)]
    use_bf16 = cfg.bf16 and x.device.type == "cuda"
    with torch.autocast(x.device.type, torch.bfloat16, enabled=use_bf16):
        with torch.no_grad():
            h = target(x)
            h = F.layer_norm(h.float(), h.shape[-1:])  # (B, N, D)
        loss = model(x, masks, h, masker.grid)
    stop_on_non_finite(loss, step + 1, "wm-pretrain")  # before the update and any checkpoint
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
    opt.step()
    m = momentum_at(cfg, step)
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(student.encoder.parameters()), 1 - m)
    return loss.detach(), m


def make_masker(cfg: PretrainConfig) -> MultiBlockMasker:
    """Masker over the (T/tubelet, h, w) token grid of a training clip."""
    side = cfg.encoder.image_size // cfg.encoder.patch_size
    return MultiBlockMasker((cfg.num_frames // cfg.encoder.tubelet_size, side, side), cfg.masks)


def _restore(run_dir: Path, student, target, opt) -> tuple[int, list]:
    """Load the run's last checkpoint into the models/optimizer; (step, history) or (0, [])."""
    ckpt = run_io.load_training_checkpoint(
        run_dir, required=("student", "target", "optimizer", "step", "history", "rng")
    )
    if ckpt is None:
        return 0, []
    path = str(run_dir / run_io.CHECKPOINT_NAME)
    load_state_strict(student, ckpt["student"], path, what="student encoder")
    load_state_strict(target, ckpt["target"], path, what="target encoder")
    opt.load_state_dict(ckpt["optimizer"])
    run_io.set_rng_state(ckpt["rng"])
    return ckpt["step"], ckpt["history"]


def _save(run_dir: Path, student, target, opt, step: int, history: list) -> None:
    run_io.atomic_torch_save(
        {"student": student.state_dict(), "target": target.state_dict(),
         "optimizer": opt.state_dict(), "step": step, "history": history,
         "rng": run_io.rng_state()}, run_dir / run_io.CHECKPOINT_NAME,
    )  # fmt: skip
    run_io.write_log(run_dir, history)


def train(cfg: PretrainConfig) -> Path:
    """Run (or resume) pretraining; returns the exported encoder folder."""
    rank, world, device = setup_distributed(cfg.device)
    run_dir = Path(cfg.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    preprocess = PreprocessConfig(image_size=cfg.encoder.image_size)
    source = open_clip_source(cfg.data_root, cfg.num_frames, cfg.frame_stride, cfg.camera)
    dataset = PreprocessedClips(source, preprocess)
    steps_per_epoch = len(dataset) // world // cfg.batch_size
    if steps_per_epoch == 0:
        raise DatasetError(f"{cfg.data_root}: {len(dataset)} clips < {cfg.batch_size} x {world}")
    student, target, opt = build_models(cfg, device)
    step, history = _restore(run_dir, student, target, opt)
    model = DistributedDataParallel(student) if world > 1 else student
    masker = make_masker(cfg)
    end = min(cfg.total_steps, cfg.stop_at_step or cfg.total_steps)
    bar = tqdm(total=end, initial=step, disable=rank != 0, desc="wm-pretrain", dynamic_ncols=True)
    epoch, batches = -1, None
    while step < end:
        if step // steps_per_epoch != epoch:
            epoch = step // steps_per_epoch
            batches = _batches(dataset, cfg, rank, world, epoch, step % steps_per_epoch)
        tic = time.perf_counter()
        x = next(batches).to(device, non_blocking=True)  # (B, 3, T, S, S)
        loss, m = train_step(cfg, student, target, model, opt, masker, x, step, rank)
        if world > 1:
            dist.all_reduce(loss)
            loss /= world
        step += 1
        clips_per_s = x.shape[0] * world / (time.perf_counter() - tic)
        history.append({"step": step, "loss": loss.item(), "lr": lr_at(cfg, step - 1),
                        "momentum": m, "clips_per_s": clips_per_s})  # fmt: skip
        bar.update(1)
        bar.set_postfix(loss=f"{history[-1]['loss']:.4f}", clips_s=f"{clips_per_s:.1f}")
        if rank == 0 and (step % cfg.checkpoint_every == 0 or step == end):
            _save(run_dir, student, target, opt, step, history)
    bar.close()
    export = run_dir / "encoder"
    if rank == 0 and step >= cfg.total_steps:
        save_encoder(export, target.cpu().eval(), preprocess)
    if dist.is_initialized():
        dist.barrier()
    return export


def main() -> None:
    """Hydra entry point: ``wm-pretrain data_root=... out_dir=... [encoder=vit_nano_cpu]``."""
    schema = plain_defaults(PretrainConfig)
    schema["predictor"].pop("embed_dim")  # always the encoder's width
    schema["encoder"] = next(n for n, c in ENCODER_PRESETS.items() if c == PretrainConfig.encoder)
    run_cli("pretrain", PretrainConfig.from_dict, _run, schema=schema, renamed=RENAMED)


def _run(cfg: PretrainConfig) -> None:
    train(cfg)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
