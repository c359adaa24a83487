"""Expert corrections: latents of the states a goal policy visited, each labelled with the
action an expert would take there (DAgger; written by ``wm-dagger``, read by
``wm-train-policy corrections=[...]``).

A corrections folder holds ``corrections.json`` (the encoder identity the latents come from,
and how they were collected) and one ``ep_NNNNNN.npz`` per rollout:

- ``z``: (T, N, D) float16, the frames' latents as ``WorldModel.encode`` returns them;
- ``goal``: (N, D) float16, the goal image's latent the policy was given;
- ``state``: (T, S) float32; ``label``: (T, A) float32, the expert's action at each frame;
- ``success``: whether the rollout reached the goal; ``seed``: its reset seed.

Unlike an episode dataset's actions, a label is not the action that was executed (that was
the policy's), so these folders train a policy, never a predictor.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from worldmodel.errors import DatasetError

CORRECTIONS_META = "corrections.json"
FORMAT_VERSION = 1
_FIELDS = ("z", "goal", "state", "label", "success", "seed")


def episode_path(folder: str | Path, index: int) -> Path:
    return Path(folder) / f"ep_{index:06d}.npz"


def open_corrections(folder: str | Path, meta: dict[str, Any]) -> Path:
    """Create ``folder`` with ``meta`` or check that its recorded meta equals it (a rerun
    continues only the same collection); ValueError naming the differing fields otherwise."""
    folder = Path(folder)
    path = folder / CORRECTIONS_META
    meta = {"format_version": FORMAT_VERSION, **meta}
    if path.exists():
        old = json.loads(path.read_text())
        diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
        if diff:
            raise ValueError(
                f"{path}: collected with other settings ({', '.join(diff)}: "
                f"{ {k: old.get(k) for k in diff} } there, { {k: meta.get(k) for k in diff} } "
                "now); choose another out_dir"
            )
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, path)
    return folder


def write_episode(folder: str | Path, index: int, **arrays: np.ndarray) -> Path:
    """Write rollout ``index`` atomically (a crash leaves no half file)."""
    missing = [f for f in _FIELDS if f not in arrays]
    if missing:
        raise ValueError(f"write_episode: missing fields {missing}")
    path = episode_path(folder, index)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def load_corrections(folder: str | Path, encoder: str) -> list[dict[str, np.ndarray]]:
    """The rollouts of ``folder`` (DatasetError naming the file when a latent comes from
    another encoder than ``encoder``, or an array is missing or misshapen)."""
    folder = Path(folder)
    meta_path = folder / CORRECTIONS_META
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path}: not found; is {folder} a wm-dagger out_dir?")
    meta = json.loads(meta_path.read_text())
    if meta.get("encoder") != encoder:
        raise DatasetError(
            f"{meta_path}: latents of encoder {str(meta.get('encoder'))[:12]}…, the model's is "
            f"{encoder[:12]}…: collect corrections with this model"
        )
    episodes = []
    for path in sorted(folder.glob("ep_*.npz")):
        if path.name.endswith(".tmp.npz"):
            continue
        with np.load(path) as f:
            missing = [k for k in _FIELDS if k not in f.files]
            if missing:
                raise DatasetError(f"{path}: missing arrays {missing}")
            ep = {k: f[k] for k in _FIELDS}
        T = len(ep["z"])
        if ep["z"].ndim != 3 or ep["goal"].shape != ep["z"].shape[1:] or T == 0:
            raise DatasetError(
                f"{path}: z {ep['z'].shape} and goal {ep['goal'].shape} do not fit (T, N, D) "
                "and (N, D)"
            )
        if len(ep["state"]) != T or len(ep["label"]) != T:
            raise DatasetError(
                f"{path}: {T} latents, {len(ep['state'])} states, {len(ep['label'])} labels"
            )
        episodes.append(ep)
    if not episodes:
        raise DatasetError(f"{folder}: no ep_*.npz rollouts")
    return episodes
