"""Importers of robot recordings into episode datasets (``wm-import``).

Formats: LeRobot v2.0 / v2.1 / v3.0 (:mod:`.lerobot`) and DROID raw episodes as the V-JEPA 2
DROID loader reads them (:mod:`.droid`); the shared conversion (resampling, actions, frames,
checks, statistics) is in :mod:`.common`, the command in :mod:`.cli`, writers of small datasets in
the published layouts (for tests and docs) in :mod:`.fixtures`. pyarrow (LeRobot) and h5py
(DROID) are optional: ``pip install -e '.[import]'``.
"""

from __future__ import annotations

from worldmodel._lazy import lazy_exports

_EXPORTS = {
    "ImportConfig": "worldmodel.data.importers.config",
    "ImportResult": "worldmodel.data.importers.cli",
    "import_dataset": "worldmodel.data.importers.cli",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("worldmodel.data.importers", _EXPORTS)
