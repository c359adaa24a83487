"""The world model: a frozen V-JEPA encoder and an action-conditioned predictor, trained on
recorded episodes. Imports neither the simulator (``envs``) nor the planner (``planning``).

Public API (imported lazily, so ``import worldmodel.data`` does not import torch):
:class:`WorldModel` (``WorldModel.load(folder)``), :class:`FrozenEncoder`, the episode format
(:func:`open_dataset`, :class:`EpisodeWriter`, :class:`DatasetMeta`, :class:`CameraMeta`) and the
project's errors. Subpackages: ``models``, ``data``, ``training``, ``checkpoints``.
"""

from __future__ import annotations

from worldmodel._lazy import lazy_exports

_EXPORTS = {
    "WorldModel": "worldmodel.world_model",
    "FrozenEncoder": "worldmodel.frozen_encoder",
    "open_dataset": "worldmodel.data",
    "EpisodeWriter": "worldmodel.data",
    "DatasetMeta": "worldmodel.data",
    "CameraMeta": "worldmodel.data",
    "make_step_table": "worldmodel.data",
    "CameraMismatchError": "worldmodel.errors",
    "CheckpointError": "worldmodel.errors",
    "DatasetError": "worldmodel.errors",
    "StaleCacheError": "worldmodel.errors",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("worldmodel", _EXPORTS)
