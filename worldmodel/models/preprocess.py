"""Pixels into the encoder, in one place: center square crop, antialiased resize, ImageNet norm.

uint8 (B, T, H, W, 3) RGB -> float (B, 3, T, S, S). The config is recorded in every checkpoint and
in the encoder identity, so features from different preprocessing never mix.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessConfig:
    """Square output side ``image_size``; per-channel mean/std on [0, 1] pixels."""

    image_size: int = 64
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    center_crop: bool = True
    interpolation: str = "bilinear"
    antialias: bool = True

    def __post_init__(self) -> None:
        if self.image_size <= 0:
            raise ValueError(f"PreprocessConfig.image_size must be > 0, got {self.image_size}")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"PreprocessConfig mean/std need 3 values, got {self.mean} {self.std}")
        if min(self.std) <= 0:
            raise ValueError(f"PreprocessConfig.std must be > 0, got {self.std}")
        if self.interpolation not in ("bilinear", "bicubic", "area"):
            raise ValueError(f"PreprocessConfig.interpolation unknown: {self.interpolation!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        return cls(**d)


class Preprocessor:
    """Callable: uint8 (B, T, H, W, 3) numpy or torch -> float32 (B, 3, T, S, S) on ``device``."""

    def __init__(self, cfg: PreprocessConfig, device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self._mean = torch.tensor(cfg.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(cfg.std, device=self.device).view(1, 3, 1, 1)

    def __call__(self, frames: Tensor | np.ndarray) -> Tensor:
        if isinstance(frames, np.ndarray):
            frames = torch.from_numpy(np.ascontiguousarray(frames))
        if frames.ndim != 5 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames (B, T, H, W, 3), got {tuple(frames.shape)}")
        if frames.dtype != torch.uint8:
            raise ValueError(f"expected uint8 frames, got {frames.dtype}")
        B, T, H, W, _ = frames.shape
        x = frames.to(self.device).reshape(B * T, H, W, 3).permute(0, 3, 1, 2)  # (BT, 3, H, W)
        if self.cfg.center_crop and H != W:
            side = min(H, W)
            top, left = (H - side) // 2, (W - side) // 2
            x = x[:, :, top : top + side, left : left + side]
        x = x.float().div_(255.0)
        S = self.cfg.image_size
        if x.shape[-2:] != (S, S):
            antialias = self.cfg.antialias and self.cfg.interpolation != "area"
            x = F.interpolate(
                x, size=(S, S), mode=self.cfg.interpolation, antialias=antialias,
                align_corners=False if self.cfg.interpolation != "area" else None,
            )  # fmt: skip
        x = (x - self._mean) / self._std  # (BT, 3, S, S)
        return x.reshape(B, T, 3, S, S).permute(0, 2, 1, 3, 4).contiguous()  # (B, 3, T, S, S)
