"""Episode datasets: the on-disk format (``meta``, ``steps``), the writer, the PyAV reader,
clips (``clips.ClipDataset`` and the one clip indexer) and the action convention (``actions``).

Public API, imported lazily (``worldmodel.data.actions`` alone, for the action bounds, imports
neither PyAV nor torch): :func:`open_dataset`, :class:`EpisodeDataset`, :class:`Clip`,
:class:`EpisodeWriter`, :func:`episode_name`, :class:`DatasetMeta`, :class:`CameraMeta`,
:class:`VideoSpec`, :func:`read_meta`, :data:`FORMAT_VERSION`, :class:`StepTable`,
:func:`load_steps`, :func:`make_step_table`.
"""

from __future__ import annotations

from worldmodel._lazy import lazy_exports

_EXPORTS = {
    "Clip": "worldmodel.data.episodes",
    "EpisodeDataset": "worldmodel.data.episodes",
    "open_dataset": "worldmodel.data.episodes",
    "FORMAT_VERSION": "worldmodel.data.meta",
    "CameraMeta": "worldmodel.data.meta",
    "DatasetMeta": "worldmodel.data.meta",
    "VideoSpec": "worldmodel.data.meta",
    "read_meta": "worldmodel.data.meta",
    "StepTable": "worldmodel.data.steps",
    "load_steps": "worldmodel.data.steps",
    "make_step_table": "worldmodel.data.steps",
    "EpisodeWriter": "worldmodel.data.writer",
    "episode_name": "worldmodel.data.writer",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("worldmodel.data", _EXPORTS)
