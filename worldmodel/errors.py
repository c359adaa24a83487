"""Exceptions a user can cause, each naming the file or field and what was expected."""

from __future__ import annotations


class WorldModelError(Exception):
    """Base class of every error this package raises on bad user input."""


class DatasetError(WorldModelError, ValueError):
    """An episode dataset on disk is missing, corrupt or inconsistent."""


class CheckpointError(WorldModelError, ValueError):
    """A checkpoint is missing, corrupt, of an unknown format or does not match the model."""


class StaleCacheError(WorldModelError, ValueError):
    """A feature cache was made with another encoder or preprocessing than the one in use."""


class CameraMismatchError(WorldModelError, ValueError):
    """A world model is used with a camera other than the one its training data was filmed with."""


class CacheDirError(WorldModelError, ValueError):
    """wm-cache refuses a cache folder: it is the dataset folder, contains it or lies inside its
    episodes, or it holds files wm-cache did not write (writing or ``overwrite=true`` there
    could destroy them)."""
