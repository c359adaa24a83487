"""wm-collect: episodes of any env meeting the collection contract, written in the episode
format of :mod:`worldmodel.data` by parallel, resumable worker processes."""

from envs.collection.collect import collect, main
from envs.collection.config import CollectConfig

__all__ = ["CollectConfig", "collect", "main"]
