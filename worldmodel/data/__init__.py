"""Episode datasets: on-disk format, writer, decord reader (``ClipDataset`` lives in
``worldmodel.data.clips`` so that importing this package does not import torch)."""

from worldmodel.data.episodes import Clip, EpisodeDataset, open_dataset
from worldmodel.data.meta import FORMAT_VERSION, CameraMeta, DatasetMeta, VideoSpec, read_meta
from worldmodel.data.steps import StepTable, load_steps, make_step_table
from worldmodel.data.writer import EpisodeWriter, episode_name

__all__ = [
    "FORMAT_VERSION",
    "CameraMeta",
    "Clip",
    "DatasetMeta",
    "EpisodeDataset",
    "EpisodeWriter",
    "StepTable",
    "VideoSpec",
    "episode_name",
    "load_steps",
    "make_step_table",
    "open_dataset",
    "read_meta",
]
