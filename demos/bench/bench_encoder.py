"""Encoder throughput: images/s at batch 1 and 64 (single images as 2-frame tubelets) and
pretraining clips/s, on randomly initialised weights (speed does not depend on the values).

    python demos/bench/bench_encoder.py [--threads 1] [--presets vit_nano_cpu vit_tiny_cpu] [--vit-l]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import ENCODER_PRESETS, VisionTransformer, count_parameters
from worldmodel.training.masking import MaskPredictorConfig
from worldmodel.training.pretrain import PretrainConfig, build_models, make_masker, train_step


def images_per_s(enc: FrozenEncoder, batch: int, min_time_s: float = 1.0) -> float:
    """Median-free simple rate: repeat encode_frames until min_time_s has passed."""
    side = enc.preprocess_cfg.image_size
    frames = np.random.default_rng(0).integers(0, 256, (batch, side, side, 3), dtype=np.uint8)
    enc.encode_frames(frames)  # warm-up
    count, tic = 0, time.perf_counter()
    while time.perf_counter() - tic < min_time_s:
        enc.encode_frames(frames)
        count += batch
    return count / (time.perf_counter() - tic)


def clips_per_s(preset: str, batch: int, steps: int, device: torch.device) -> float:
    """Pretraining optimizer steps (context enc + predictor + EMA target) in clips/s."""
    enc_cfg = ENCODER_PRESETS[preset]
    cfg = PretrainConfig(
        data_root="unused", encoder=enc_cfg, batch_size=batch,
        predictor=MaskPredictorConfig(embed_dim=enc_cfg.embed_dim),
    )  # fmt: skip
    student, target, opt = build_models(cfg, device)
    masker = make_masker(cfg)
    x = torch.randn(batch, 3, cfg.num_frames, enc_cfg.image_size, enc_cfg.image_size, device=device)
    train_step(cfg, student, target, student, opt, masker, x, 0)  # warm-up
    tic = time.perf_counter()
    for step in range(1, steps + 1):
        train_step(cfg, student, target, student, opt, masker, x, step)
    return batch * steps / (time.perf_counter() - tic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--presets", nargs="+", default=["vit_nano_cpu", "vit_tiny_cpu"])
    parser.add_argument("--vit-l", action="store_true", help="also time vit_l at batch 1")
    parser.add_argument("--train-batch", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__}")
    for name in args.presets:
        torch.manual_seed(0)
        model = VisionTransformer(ENCODER_PRESETS[name])
        enc = FrozenEncoder(model, batch_size=64, device=device)
        r1, r64 = images_per_s(enc, 1), images_per_s(enc, 64)
        cps = clips_per_s(name, args.train_batch, 3, device)
        print(
            f"{name:14s} params={count_parameters(model) / 1e6:6.2f}M tokens/img="
            f"{enc.tokens_per_frame:4d}  images/s: batch1={r1:8.1f} batch64={r64:8.1f}  "
            f"pretrain clips/s (B={args.train_batch}, 4 frames)={cps:6.1f}"
        )
    if args.vit_l:
        with torch.device(device):
            model = VisionTransformer(ENCODER_PRESETS["vit_l"])
        enc = FrozenEncoder(model, batch_size=1, device=device)
        print(f"vit_l          images/s batch1={images_per_s(enc, 1, min_time_s=2.0):8.2f}")


if __name__ == "__main__":
    main()
