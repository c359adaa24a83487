"""Training on recorded episodes: V-JEPA encoder pretraining (wm-pretrain), the frozen-feature
cache (wm-cache), the action-conditioned predictor (wm-train), their run folders and DDP setup.

Public API (imported lazily, so ``python -m worldmodel.training.train`` runs its module once):
:class:`PretrainConfig`, :class:`CacheConfig` / :func:`build_cache`, :class:`TrainConfig`; the
loops are ``worldmodel.training.pretrain.train`` and ``worldmodel.training.train.train``.
"""

from __future__ import annotations

from worldmodel._lazy import lazy_exports

_EXPORTS = {
    "PretrainConfig": ("worldmodel.training.pretrain", "PretrainConfig"),
    "CacheConfig": ("worldmodel.training.cache", "CacheConfig"),
    "build_cache": ("worldmodel.training.cache", "build_cache"),
    "TrainConfig": ("worldmodel.training.train_config", "TrainConfig"),
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("worldmodel.training", _EXPORTS)
