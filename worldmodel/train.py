"""wm-train: train the AC predictor on frozen features (teacher forcing + rollout L1).

``wm-train data_root=... encoder_dir=... cache_root=... [predictor=small] [mode=on_the_fly]``
or ``torchrun --nproc_per_node N -m worldmodel.train ...``. Validation (episodes held out) also
scores the copy-last baseline. Checkpoints are atomic and resumable; at the end the world model
folder ``out_dir/world_model`` is written.

The code lives in :mod:`worldmodel.train_config` (options, schedule), :mod:`worldmodel.train_data`
(clips, sampling, sources), :mod:`worldmodel.train_io` (logs, checkpoints) and
:mod:`worldmodel.train_loop` (losses, loop); this module is the entry point and re-exports them.
"""

from __future__ import annotations

from pathlib import Path

import torch.distributed as dist

from worldmodel.train_config import TrainConfig, build_predictor, config_from_mapping, lr_factor
from worldmodel.train_data import (
    ClipSampler,
    EpisodeSource,
    build_source,
    split_episodes,
    window_refs,
)
from worldmodel.train_io import load_checkpoint, save_checkpoint
from worldmodel.train_loop import clip_losses, evaluate, train

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # works from any cwd

__all__ = [
    "ClipSampler",
    "EpisodeSource",
    "TrainConfig",
    "build_predictor",
    "build_source",
    "clip_losses",
    "config_from_mapping",
    "evaluate",
    "load_checkpoint",
    "lr_factor",
    "main",
    "save_checkpoint",
    "split_episodes",
    "train",
    "window_refs",
]


def main() -> None:
    """Hydra entry point (``configs/train.yaml`` over the TrainConfig defaults)."""
    import hydra
    from hydra.core.config_store import ConfigStore
    from omegaconf import DictConfig, OmegaConf

    from worldmodel.pretrain_io import plain_defaults

    ConfigStore.instance().store(name="train_defaults", node=plain_defaults(TrainConfig))

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
    def _run(dcfg: DictConfig) -> None:
        cfg = config_from_mapping(OmegaConf.to_container(dcfg, resolve=True))
        report = train(cfg)
        if report:
            print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in report.items()})

    _run()
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
