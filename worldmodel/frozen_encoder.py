"""FrozenEncoder: a V-JEPA encoder plus its preprocessing, used only for inference.

Single images are encoded as 2-frame tubelets (the frame repeated), batched, under
``torch.inference_mode``. Output is the encoder's final-norm tokens (NOT layer-normed).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from worldmodel import checkpoints
from worldmodel.errors import CheckpointError
from worldmodel.models.encoder import VisionTransformer
from worldmodel.models.preprocess import PreprocessConfig, Preprocessor


class FrozenEncoder:
    """Frozen encoder + preprocessing. encode_frames: uint8 (B, H, W, 3) -> float32 (B, N, D)."""

    def __init__(
        self,
        encoder: VisionTransformer,
        preprocess_cfg: PreprocessConfig | None = None,
        batch_size: int = 64,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        self.preprocess_cfg = preprocess_cfg or PreprocessConfig(encoder.cfg.image_size)
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device).eval().requires_grad_(False)
        self.batch_size = batch_size
        self.dtype = dtype
        self._preprocess = Preprocessor(self.preprocess_cfg, self.device)
        self._identity: str | None = None

    @property
    def embed_dim(self) -> int:
        """D, the feature width."""
        return self.encoder.cfg.embed_dim

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) tokens per frame at the preprocessing resolution."""
        side = self.preprocess_cfg.image_size // self.encoder.cfg.patch_size
        return side, side

    @property
    def tokens_per_frame(self) -> int:
        """N = h * w."""
        h, w = self.grid
        return h * w

    def encode_frames(self, frames: Tensor | np.ndarray) -> Tensor:
        """Encode single images, each as a 2-frame tubelet.

        Args:
            frames: (B, H, W, 3) uint8 RGB.

        Returns:
            (B, N, D) float32 on the encoder's device.
        """
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames (B, H, W, 3), got {tuple(frames.shape)}")
        if isinstance(frames, np.ndarray):
            frames = torch.from_numpy(np.ascontiguousarray(frames))
        clips = frames[:, None].expand(-1, self.encoder.cfg.tubelet_size, -1, -1, -1)
        return self.encode_clips(clips)  # (B, T=tubelet, H, W, 3) -> (B, N, D)

    def encode_clips(self, clips: Tensor | np.ndarray) -> Tensor:
        """Encode videos. clips: (B, T, H, W, 3) uint8 -> (B, T/tubelet * N, D) float32."""
        outputs = []
        use_autocast = self.dtype != torch.float32
        with torch.inference_mode():
            for start in range(0, clips.shape[0], self.batch_size):
                x = self._preprocess(clips[start : start + self.batch_size])  # (b, 3, T, S, S)
                with torch.autocast(self.device.type, dtype=self.dtype, enabled=use_autocast):
                    z = self.encoder(x)
                outputs.append(z.float())
        if not outputs:
            return torch.zeros(0, 0, self.embed_dim, device=self.device)
        return torch.cat(outputs, dim=0)

    def identity(self) -> str:
        """sha256 over architecture, preprocessing and every weight tensor (cached)."""
        if self._identity is None:
            h = hashlib.sha256()
            h.update(json.dumps(asdict(self.encoder.cfg), sort_keys=True).encode())
            h.update(json.dumps(self.preprocess_cfg.to_dict(), sort_keys=True).encode())
            for name, tensor in sorted(self.encoder.state_dict().items()):
                h.update(name.encode())
                h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
            self._identity = h.hexdigest()
        return self._identity

    def save(self, folder: str | os.PathLike) -> Path:
        """Write our checkpoint folder (model.safetensors + config.json)."""
        return checkpoints.save_encoder(folder, self.encoder, self.preprocess_cfg)

    @classmethod
    def load(cls, folder: str | os.PathLike, **kwargs) -> FrozenEncoder:
        """Load a folder written by :meth:`save`."""
        encoder, preprocess_cfg = checkpoints.load_encoder(folder)
        return cls(encoder, preprocess_cfg, **kwargs)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **kwargs) -> FrozenEncoder:
        """Our folder, a Hugging Face VJEPA2 folder, or a released ``.pt`` file (256 px)."""
        path = Path(path)
        if path.is_dir():
            if checkpoints.read_our_config(path) is not None:
                return cls.load(path, **kwargs)
            encoder = checkpoints.load_hf_encoder(path)
        elif path.is_file():
            encoder = checkpoints.load_published_encoder(path)
        else:
            raise CheckpointError(f"encoder checkpoint {path} does not exist")
        return cls(encoder, PreprocessConfig(encoder.cfg.image_size), **kwargs)
