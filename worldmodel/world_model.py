"""The world model the planner drives: frozen encoder + AC predictor (planning's LatentDynamics).

``encode`` runs the frozen encoder, pools the grid as the predictor expects and layer-norms.
``rollout`` predicts H future latents for S sampled action sequences per batch element,
autoregressively with the predictor's KV cache: each step only processes its own 2 + N tokens.
Work that does not depend on the samples (states are propagated per sample, but any executed
``history`` steps and their keys/values) is done once per batch element and broadcast over S.
Note the first imagined step is inherently per sample: its frame tokens attend to ``action_0``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor

from worldmodel.checkpoints.predictor import (
    CONFIG_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    load_predictor_folder,
)
from worldmodel.data.images import fit_frames
from worldmodel.errors import CameraMismatchError, CheckpointError
from worldmodel.models.encoder import ENCODER_PRESETS, VisionTransformer
from worldmodel.models.latents import layer_norm
from worldmodel.models.layout import Layout
from worldmodel.models.predictor import PREDICTOR_PRESETS, ACPredictor
from worldmodel.models.preprocess import PreprocessConfig
from worldmodel.models.views import MultiViewEncoder, parse_views, view_token_mask

ENCODER_DIR = "encoder"
# Frames smaller than this carry no scene (a 1x2 goal image would be upsampled into a blur the
# planner then chases); the smallest datasets we make are 64 px.
MIN_IMAGE_SIDE = 16


class RolloutHistory(NamedTuple):
    """Executed steps before the current frame (known actions), shared by all samples.

    z: (B, T0, N, D) layer-normed latents; states: (B, T0, 7); actions: (B, T0, 7).
    """

    z: Tensor
    states: Tensor
    actions: Tensor


class WorldModel:
    """Frozen encoder + :class:`ACPredictor` implementing ``planning.protocol.LatentDynamics``."""

    def __init__(
        self,
        frozen_encoder: Any,
        predictor: ACPredictor,
        camera: dict | None = None,
        views: tuple[str, ...] | str = ("exterior",),
        layout: Layout | None = None,
    ) -> None:
        """``camera``: the training data's camera record (``worldmodel.data.meta.CameraMeta``
        as a dict: name, width, height, fovy_deg, parent, pos_m, quat_wxyz), saved with the
        model so :meth:`check_camera` can refuse a different view; None = unknown.
        ``views``: the cameras a frame holds side by side (``worldmodel.models.views``); with several,
        ``frozen_encoder`` is the single-view encoder and is wrapped here.
        ``layout``: the state/action conventions of the training data (dims, names, how an
        action moves the state, per-dim action bounds, control rate); default: the published
        7-D end-effector-delta layout with the DROID bounds."""
        self.views = parse_views(views)
        if isinstance(frozen_encoder, MultiViewEncoder):
            if frozen_encoder.views != self.views:
                raise ValueError(f"encoder views {frozen_encoder.views} != views {self.views}")
        elif len(self.views) > 1:
            frozen_encoder = MultiViewEncoder(frozen_encoder, self.views)
        cfg = predictor.cfg
        grid = getattr(frozen_encoder, "grid", None)
        if grid is not None and tuple(grid) != tuple(cfg.input_grid):
            raise ValueError(f"encoder grid {tuple(grid)} != predictor input_grid {cfg.input_grid}")
        dim = getattr(frozen_encoder, "embed_dim", None)
        if dim is not None and dim != cfg.encoder_dim:
            raise ValueError(f"encoder embed_dim {dim} != predictor encoder_dim {cfg.encoder_dim}")
        layout = layout if layout is not None else Layout()
        if (layout.state_dim, layout.action_dim) != (cfg.state_dim, cfg.action_dim):
            raise ValueError(
                f"layout has {layout.state_dim}-D states and {layout.action_dim}-D actions; the "
                f"predictor takes {cfg.state_dim}-D and {cfg.action_dim}-D"
            )
        self.layout = layout
        self.encoder = frozen_encoder
        self.predictor = predictor.eval()
        self.camera = dict(camera) if camera is not None else None

    def check_camera(self, current: dict) -> None:
        """Raise :class:`CameraMismatchError` unless ``current`` (a camera record like
        ``camera``) matches the camera the model was trained on. A model without a record
        passes: nothing is known to compare with."""
        if self.camera is None:
            return
        diffs = camera_differences(self.camera, current)
        if diffs:
            raise CameraMismatchError(
                "the world model was trained on another camera view than this env renders ("
                + "; ".join(diffs)
                + "). Latent distances across views are meaningless: render with the training "
                "camera (EnvConfig camera_pos / camera_lookat / camera_fovy_deg, image_size) "
                "or train a model on data from this one."
            )

    @property
    def action_dim(self) -> int:
        return self.predictor.cfg.action_dim

    @property
    def state_dim(self) -> int:
        return self.predictor.cfg.state_dim

    @property
    def device(self) -> torch.device:
        return next(self.predictor.parameters()).device

    def view_tokens(self, selected: tuple[str, ...] | list[str] | str) -> Tensor:
        """Bool (N,) mask of the latent tokens (pooled grid) that come from ``selected`` views,
        e.g. to compare only some cameras in the goal energy (``token_weighted_l1_energy``)."""
        return view_token_mask(self.views, self.predictor.cfg.grid, selected)

    @torch.no_grad()
    def encode(
        self, images: Tensor | np.ndarray, states: Tensor | np.ndarray, pooled: bool = True
    ) -> Tensor:
        """(B, H_img, W_img, 3) uint8 frames, (B, S) states -> (B, N, D) pooled, layer-normed
        (``pooled=False``: the encoder's full token grid, layer-normed; what a policy trained
        with ``pooled=false`` takes; the predictor takes the pooled grid).

        With several ``views`` a frame is their mosaic, (B, H, V * H, 3) in ``views`` order."""
        S = self.state_dim
        if images.ndim != 4 or images.shape[-1] != 3 or states.shape[-1] != S:
            raise ValueError(
                f"expected images (B,H,W,3) uint8 and states (B,{S}), got "
                f"{tuple(images.shape)} and {tuple(states.shape)}"
            )
        if images.dtype not in (torch.uint8, np.uint8):
            raise ValueError(f"expected uint8 images (0..255), got {images.dtype}")
        if min(images.shape[1:3]) < MIN_IMAGE_SIDE:
            raise ValueError(
                f"images of {images.shape[1]}x{images.shape[2]} px are too small to plan on "
                f"(at least {MIN_IMAGE_SIDE} px per side)"
            )
        if not bool(torch.isfinite(torch.as_tensor(states)).all()):
            raise ValueError("states hold NaN or inf")
        images = self._fit(images)
        feats = torch.as_tensor(self.encoder.encode_frames(images)).float()  # (B, h*w, D)
        return self.latents(feats.to(self.device), pooled)

    def latents(self, feats: Tensor, pooled: bool = True) -> Tensor:
        """(..., h*w, D) frozen encoder features (e.g. a wm-cache's) -> the latents
        :meth:`encode` returns: pooled by the predictor (``pooled``) and layer-normed."""
        return layer_norm(self.predictor.pool(feats) if pooled else feats)

    def _fit(self, images):
        """Frames that are not square (one view) are fitted by the layout's image policy, as the
        training data were; the encoder's preprocessing then center-crops a square (a no-op)
        and resizes."""
        h, w = images.shape[1:3]
        if len(self.views) > 1 or h == w or self.layout.image_policy == "crop":
            return images  # crop: what the encoder's center crop does anyway
        side = getattr(getattr(self.encoder, "preprocess_cfg", None), "image_size", max(h, w))
        fitted = fit_frames(
            np.asarray(torch.as_tensor(images).cpu()), side, self.layout.image_policy
        )
        return torch.from_numpy(fitted)

    def _prefill(self, history: RolloutHistory | None):
        cache = self.predictor.new_cache()
        if history is not None:
            self.predictor(history.z, history.actions, history.states, cache=cache)
        return cache

    @torch.no_grad()
    def rollout(
        self,
        z_context: Tensor,
        state_context: Tensor,
        actions: Tensor,
        history: RolloutHistory | None = None,
    ) -> Tensor:
        """Predict latents after each action of each sampled sequence.

        Args:
            z_context: (B, N, D) layer-normed latent of the current frame.
            state_context: (B, S) current state.
            actions: (B, S, H, A) sampled action sequences.
            history: optional executed steps before the current frame (encoded once per B).

        Returns:
            (B, S, H, N, D) layer-normed predictions; entry h follows actions[..., : h + 1, :].
        """
        B, S, H, A = actions.shape
        N, D = z_context.shape[-2:]
        if (
            z_context.shape[0] != B
            or state_context.shape != (B, self.state_dim)
            or self.action_dim != A
        ):
            raise ValueError(
                f"expected z (B,N,D), state (B,{self.state_dim}), actions (B,S,H,{self.action_dim}); got "
                f"{tuple(z_context.shape)}, {tuple(state_context.shape)}, {tuple(actions.shape)}"
            )
        dev = self.device
        actions = actions.to(dev, torch.float32).reshape(B * S, H, A)  # (B*S, H, A)
        cache = self._prefill(history).expand(S)  # history once per B, then broadcast
        state0 = state_context.to(dev, torch.float32).repeat_interleave(S, dim=0)  # (B*S, S_dim)
        states = self.layout.propagate(state0, actions)  # (B*S, H, S_dim)
        z = z_context.to(dev, torch.float32).repeat_interleave(S, dim=0)[:, None]  # (B*S,1,N,D)
        preds = []
        for h in range(H):
            step_cache = cache if h < H - 1 else cache.read_only()  # the last step's k/v: unused
            z = layer_norm(
                self.predictor(z, actions[:, h : h + 1], states[:, h : h + 1], cache=step_cache)
            )  # (B*S, 1, N, D)
            preds.append(z)
        return torch.cat(preds, dim=1).view(B, S, H, N, D)

    def save(self, folder: str | Path) -> None:
        """Write ``encoder/`` (the frozen encoder's own format), predictor safetensors and JSON.

        Written into ``<folder>.tmp`` and renamed into place, so a killed save never leaves a
        half-written world model under ``folder`` (an older one there is replaced).
        """
        folder = Path(folder)
        tmp = folder.with_name(folder.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        self.encoder.save(tmp / ENCODER_DIR)
        state = {k: v.detach().cpu().contiguous() for k, v in self.predictor.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
        meta = {"format_version": FORMAT_VERSION, "predictor": asdict(self.predictor.cfg)}
        if self.camera is not None:
            meta["camera"] = self.camera
        if self.views != ("exterior",):
            meta["views"] = list(self.views)
        meta["layout"] = self.layout.to_dict()
        (tmp / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        if folder.exists():
            old = folder.with_name(folder.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old)
        else:
            os.replace(tmp, folder)

    @classmethod
    def load(
        cls, folder: str | Path, encoder_loader: Callable[[Path], Any] | None = None
    ) -> WorldModel:
        """Load what :meth:`save` wrote. ``encoder_loader`` defaults to ``FrozenEncoder.load``."""
        folder = Path(folder)
        predictor, meta = load_predictor_folder(folder)
        if encoder_loader is None:
            from worldmodel.frozen_encoder import FrozenEncoder

            encoder_loader = FrozenEncoder.load
        camera = meta.get("camera")
        if camera is not None and not isinstance(camera, dict):
            raise CheckpointError(f"{folder / CONFIG_FILE}: 'camera' must be an object")
        try:
            views = parse_views(meta.get("views", ["exterior"]))
        except (ValueError, AttributeError, TypeError) as err:
            raise CheckpointError(f"{folder / CONFIG_FILE}: bad 'views' ({err})") from err
        try:  # folders written before layouts were recorded: the published 7-D layout
            layout = Layout.from_dict(meta.get("layout", {}), "'layout'")
        except ValueError as err:
            raise CheckpointError(f"{folder / CONFIG_FILE}: {err}") from err
        encoder = encoder_loader(folder / ENCODER_DIR)
        try:
            return cls(encoder, predictor, camera, views, layout)
        except ValueError as err:
            raise CheckpointError(f"{folder}: {err}") from err


_CAMERA_EXACT = ("name", "width", "height", "parent")
_CAMERA_CLOSE = {"fovy_deg": 1e-3, "pos_m": 1e-4, "quat_wxyz": 1e-4}


def camera_differences(recorded: dict, current: dict) -> list[str]:
    """Human-readable differences between two camera records (empty when they match).

    A quaternion and its negation are the same rotation."""
    out = []
    for key in _CAMERA_EXACT:
        if key in recorded and recorded[key] != current.get(key):
            out.append(f"{key} {recorded[key]!r} vs {current.get(key)!r}")
    for key, tol in _CAMERA_CLOSE.items():
        if key not in recorded:
            continue
        if recorded[key] is None or current.get(key) is None:  # unknown intrinsics (fovy_deg)
            if recorded[key] is not current.get(key):
                out.append(f"{key} {recorded[key]!r} vs {current.get(key)!r}")
            continue
        a = np.atleast_1d(np.asarray(recorded[key], dtype=np.float64))
        b = np.atleast_1d(np.asarray(current.get(key, np.nan), dtype=np.float64))
        close = a.shape == b.shape and bool(np.all(np.abs(a - b) <= tol))
        if key == "quat_wxyz" and a.shape == b.shape:
            close = close or bool(np.all(np.abs(a + b) <= tol))
        if not close:
            out.append(f"{key} {np.round(a, 4).tolist()} vs {np.round(b, 4).tolist()}")
    return out


def random_world_model(
    encoder: str, predictor: str, device: str, dtype: torch.dtype, seed: int
) -> WorldModel:
    """A WorldModel of the named presets with random fp32 weights on ``device``; the encoder
    runs under autocast to ``dtype`` (the planner's calls are wrapped in it too)."""
    if encoder not in ENCODER_PRESETS:
        raise ValueError(f"unknown encoder preset {encoder!r}; have {sorted(ENCODER_PRESETS)}")
    if predictor not in PREDICTOR_PRESETS:
        raise ValueError(
            f"unknown predictor preset {predictor!r}; have {sorted(PREDICTOR_PRESETS)}"
        )
    enc_cfg, pred_cfg = ENCODER_PRESETS[encoder], PREDICTOR_PRESETS[predictor]
    grid = enc_cfg.image_size // enc_cfg.patch_size
    if (grid, grid) != tuple(pred_cfg.input_grid) or enc_cfg.embed_dim != pred_cfg.encoder_dim:
        raise ValueError(
            f"encoder {encoder} gives a {grid}x{grid} grid of {enc_cfg.embed_dim}-D tokens; "
            f"predictor {predictor} expects {pred_cfg.input_grid} of {pred_cfg.encoder_dim}-D"
        )
    torch.manual_seed(seed)
    with torch.device(device):  # initialise on the device: ViT-g has 1 B parameters
        vit = VisionTransformer(enc_cfg)
        pred = ACPredictor(pred_cfg)
    from worldmodel.frozen_encoder import FrozenEncoder

    frozen = FrozenEncoder(vit, PreprocessConfig(enc_cfg.image_size), device=device, dtype=dtype)
    return WorldModel(frozen, pred)
