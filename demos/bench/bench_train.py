"""Benchmark AC predictor training: cached features vs encoding frames on the fly.

Same predictor, same batches, same run: one timing loop reads features of pre-encoded episodes
(what ``mode=cached`` does: the fp16 memory-mapped FeatureCache written by wm-cache), the other
decodes mp4 frames and runs the frozen encoder every step (``mode=on_the_fly``). Prints
training samples/s of each and their ratio, plus parameter counts of the predictor presets.

    python demos/bench/bench_train.py --steps 20 --batch 8 --encoder vit_tiny_cpu
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from worldmodel.data.episodes import open_dataset
from worldmodel.data.synthetic import write_synthetic_dataset
from worldmodel.frozen_encoder import FrozenEncoder
from worldmodel.models.encoder import ENCODER_PRESETS, VisionTransformer
from worldmodel.models.predictor import PREDICTOR_PRESETS, ACPredictor
from worldmodel.training.cache import cache_dataset
from worldmodel.training.feature_cache import FeatureCache
from worldmodel.training.train import clip_losses
from worldmodel.training.train_config import TrainConfig, build_predictor
from worldmodel.training.train_data import ClipSampler, EpisodeSource


def param_counts() -> dict[str, int]:
    """Parameters of every predictor preset (built on the meta device, no memory)."""
    out = {}
    for name, cfg in PREDICTOR_PRESETS.items():
        with torch.device("meta"):
            out[name] = sum(p.numel() for p in ACPredictor(cfg).parameters())
    return out


def time_training(source, refs, cfg: TrainConfig, steps: int, device) -> float:
    """Samples/s of full training steps (data + forward + backward + AdamW) after 2 warmup."""
    torch.manual_seed(0)
    predictor = build_predictor(cfg, source.feature_dim, source.grid).to(device)
    opt = torch.optim.AdamW(predictor.parameters(), lr=1e-4, weight_decay=0.04)
    sampler = ClipSampler(refs, cfg.batch_size, seed=0)
    start = 0.0
    for i in range(steps + 2):
        if i == 2:
            start = time.perf_counter()
        z, a, s = source.batch(sampler.next_batch(), cfg.clip_len, predictor, device)
        tf, roll = clip_losses(predictor, z, a, s, cfg.rollout_steps)
        loss = tf + torch.stack(roll).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * cfg.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--clip-len", type=int, default=8)
    parser.add_argument("--encoder", default="vit_tiny_cpu", choices=sorted(ENCODER_PRESETS))
    parser.add_argument("--predictor", default="tiny", choices=sorted(PREDICTOR_PRESETS))
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    for name, n in param_counts().items():
        print(f"predictor preset {name:10s}: {n / 1e6:8.2f} M parameters")

    enc_cfg = ENCODER_PRESETS[args.encoder]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        write_synthetic_dataset(root, args.episodes, lengths=24, image_size=enc_cfg.image_size)
        dataset = open_dataset(root)
        torch.manual_seed(0)
        encoder = FrozenEncoder(VisionTransformer(enc_cfg), device=device)
        t0 = time.perf_counter()
        cache_dataset(dataset, encoder, Path(tmp) / "features", source={}, progress=False)
        cache = FeatureCache(Path(tmp) / "features", encoder.identity())
        n_frames = sum(cache.lengths)
        print(f"one-off caching (wm-cache): {n_frames} frames in {time.perf_counter() - t0:.2f} s")
        cfg = TrainConfig(
            predictor=args.predictor,
            clip_len=args.clip_len,
            batch_size=args.batch,
            device=str(device),
        )
        refs = np.array(
            [(e, s) for e in range(len(dataset)) for s in range(24 - args.clip_len + 1)]
        )
        cached = EpisodeSource(dataset, encoder, features=cache.features)
        live = EpisodeSource(dataset, encoder)
        sps_cached = time_training(cached, refs, cfg, args.steps, device)
        sps_live = time_training(live, refs, cfg, args.steps, device)
    print(
        f"encoder {args.encoder} ({enc_cfg.image_size}px), predictor {args.predictor}, "
        f"batch {args.batch} x {args.clip_len} frames, device {device}"
    )
    print(f"cached features : {sps_cached:8.2f} samples/s")
    print(f"on-the-fly      : {sps_live:8.2f} samples/s")
    print(f"speed-up of caching: {sps_cached / sps_live:.1f}x")


if __name__ == "__main__":
    main()
