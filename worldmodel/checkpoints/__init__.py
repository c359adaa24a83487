"""Checkpoints: the released V-JEPA 2 / 2-AC ``.pt`` files, Hugging Face ``VJEPA2Model`` folders
and our own encoder and world-model folders. Every loader is strict (names and shapes) and never
unpickles code."""

from worldmodel.checkpoints.encoder import (
    load_encoder,
    load_hf_encoder,
    load_published_encoder,
    read_our_config,
    save_encoder,
)
from worldmodel.checkpoints.predictor import (
    load_predictor_folder,
    load_published_predictor,
    read_published_state,
    save_published_format,
)
from worldmodel.checkpoints.strict import load_state_strict

__all__ = [
    "load_encoder", "load_hf_encoder", "load_predictor_folder", "load_published_encoder",
    "load_published_predictor", "load_state_strict", "read_our_config", "read_published_state",
    "save_encoder", "save_published_format",
]  # fmt: skip
