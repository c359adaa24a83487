"""wm-import: turn a LeRobot dataset or DROID raw episodes into an episode dataset.

``wm-import src=<folder> out_dir=<episodes folder> [fps=5 image_size=256 cameras=... ...]``

The source format is detected (``meta/info.json``: LeRobot; folders with ``trajectory.h5``:
DROID raw). Resumable like wm-collect: an episode is written into a temp folder and renamed when
complete, a rerun skips complete episodes and removes stale temp folders, so a killed import
continues where it stopped and never leaves half an episode. At the end the per-dimension
statistics of all imported steps go into ``meta.json`` and a summary (episodes, frames, frames/s,
skipped episodes with reasons) is printed and written to ``<out_dir>/import_summary.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from worldmodel.config import from_mapping, plain_defaults, run_cli
from worldmodel.data.importers.common import ImportPlan, convert_episode, layout_stats, plan_rate
from worldmodel.data.importers.config import ImportConfig
from worldmodel.data.meta import EE_NAMES, META_FILE, CameraMeta, DatasetMeta
from worldmodel.data.shards import gather, mine, on_rank0, rank_and_world
from worldmodel.data.steps import STEPS_FILE, load_steps
from worldmodel.data.video import probe_video
from worldmodel.data.writer import EPISODE_RE, EPISODES_DIR, TMP_SUFFIX, EpisodeWriter
from worldmodel.errors import DatasetError

SUMMARY_FILE = "import_summary.json"
CREATED_BY = "wm-import"


@dataclass
class ImportResult:
    """What one wm-import run did (also written as import_summary.json)."""

    out_dir: str
    source: str
    episodes_selected: int = 0
    imported: list[int] = field(default_factory=list)  # written by this run
    already_present: int = 0
    skipped: list[dict] = field(default_factory=list)  # {"episode", "source", "reason"}
    frames: int = 0  # output frames (= steps) written by this run, per camera
    source_rows: int = 0  # source table rows read by this run
    seconds: float = 0.0
    source_fps: float = 0.0
    fps: float = 0.0
    resampling: str = ""

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["frames_per_s"] = round(self.frames_per_s, 2)
        out["source_rows_per_s"] = (
            round(self.source_rows / self.seconds, 2) if self.seconds else 0.0
        )
        return out


def open_source(cfg: ImportConfig):
    """The source reader for ``cfg.src`` (format given or detected)."""
    from worldmodel.data.importers import droid, lerobot

    root = Path(cfg.src)
    if not root.is_dir():
        raise DatasetError(f"{root}: source folder does not exist")
    fmt = cfg.format
    if fmt == "auto":
        if lerobot.is_lerobot(root):
            fmt = "lerobot"
        elif droid.is_droid(root):
            fmt = "droid"
        else:
            raise DatasetError(
                f"{root}: not a recognised source: no {lerobot.INFO_PATH} (LeRobot) and no "
                f"{droid.TRAJECTORY} below it (DROID raw); set format= if it is one of them"
            )
    return lerobot.LeRobotSource(root, cfg) if fmt == "lerobot" else droid.DroidSource(root, cfg)


def _action_mode(cfg: ImportConfig, source) -> str:
    return cfg.action_mode or ("ee_delta_from_state" if source.format == "droid" else "as_recorded")


def build_layout(cfg: ImportConfig, source) -> ImportPlan:
    """The conversion plan, checked against the source's state / action widths up front."""
    mode = _action_mode(cfg, source)
    if mode == "ee_delta_from_state" and cfg.action_kind not in ("", "ee_delta"):
        raise ValueError(
            f"ImportConfig.action_kind={cfg.action_kind!r} conflicts with action_mode "
            f"ee_delta_from_state (the {source.format} default), which derives 'ee_delta' actions"
        )
    kind = "ee_delta" if mode == "ee_delta_from_state" else (cfg.action_kind or "absolute")
    if kind == "ee_delta":
        width = 8 if cfg.state_rotation.startswith("quat") else 7
        if len(source.state_names) != width:
            raise DatasetError(
                f"{source.root}: ee_delta needs an end-effector pose state of {width} values "
                f"[x, y, z, orientation ({cfg.state_rotation}), gripper], but state_key "
                f"{cfg.state_key or '(default)'} gives {len(source.state_names)}: "
                f"{source.state_names}"
            )
        if mode == "as_recorded" and len(source.action_names) != 7:
            raise DatasetError(
                f"{source.root}: action_kind ee_delta needs 7-D recorded actions, but "
                f"action_key {cfg.action_key or '(default)'} gives {len(source.action_names)}"
            )
    elif len(source.state_names) != len(source.action_names):
        raise DatasetError(
            f"{source.root}: action_kind {kind!r} maps actions onto states dim by dim, but "
            f"state_key {cfg.state_key or '(default)'} gives {len(source.state_names)} values "
            f"and action_key {cfg.action_key or '(default)'} {len(source.action_names)}; choose "
            "columns of the same width (e.g. state_key=observation.state[0:6])"
        )
    fps, stride = plan_rate(source.fps, cfg.fps, str(source.root))
    return ImportPlan(
        source_fps=source.fps,
        fps=fps,
        stride=stride,
        action_mode=mode,
        action_kind=kind,
        state_rotation=cfg.state_rotation,
        image_size=cfg.image_size,
        image_policy=cfg.image_policy,
        tolerance_s=cfg.timestamp_tolerance_s,
    )


def _source_sizes(source) -> dict[str, tuple[int, int]]:
    """{view: (width, height)} of the recorded frames, probed from the first readable episode."""
    errors = []
    for ref in source.refs:
        try:
            infos = {view: probe_video(v.path) for view, v in source.video_refs(ref).items()}
            return {view: (info.width, info.height) for view, info in infos.items()}
        except DatasetError as exc:
            errors.append(str(exc))
            if len(errors) >= 20:
                break
    raise DatasetError(
        f"{source.root}: no readable video among the first episodes selected; first error: "
        f"{errors[0] if errors else 'no episodes selected'}"
    )


def _names(given: tuple[str, ...], source_names: list[str], dim: int, what: str) -> tuple:
    if given:
        if len(given) != dim:
            raise ValueError(f"ImportConfig.{what} has {len(given)} names but there are {dim} dims")
        return tuple(given)
    return tuple(source_names) if len(source_names) == dim else ()


def build_meta(cfg: ImportConfig, source, layout: ImportPlan) -> DatasetMeta:
    """meta.json of the imported dataset (statistics are added once every episode is in)."""
    sizes = _source_sizes(source)
    cameras = tuple(
        CameraMeta(
            name=view,
            width=cfg.image_size,
            height=cfg.image_size,
            fovy_deg=None,  # intrinsics are not in the source formats
            parent="unknown",
            source_image_size=sizes[view],
        )
        for view in source.cameras.values()
    )
    if layout.action_kind == "ee_delta":
        state_dim = action_dim = 7
        state_names = _names(cfg.state_names, list(EE_NAMES), 7, "state_names")
        action_names = _names(cfg.action_names, list(EE_NAMES), 7, "action_names")
        state_text = action_text = ""  # DatasetMeta's default end-effector conventions
    else:
        state_dim, action_dim = len(source.state_names), len(source.action_names)
        state_names = _names(cfg.state_names, source.state_names, state_dim, "state_names")
        action_names = _names(cfg.action_names, source.action_names, action_dim, "action_names")
        meaning = {
            "absolute": "the commanded next state (e.g. joint position targets)",
            "delta": "a per-dimension change: next state ~ state + action",
        }[layout.action_kind]
        state_text = (
            f"{state_dim}-D state as recorded in the source field(s) {cfg.state_key or 'default'} "
            f"({', '.join(state_names or source.state_names)}); state[t] is measured at frame t."
        )
        action_text = (
            f"{action_dim}-D action of kind '{layout.action_kind}': {meaning}; recorded source "
            f"field(s) {cfg.action_key or 'default'}. action[t] is applied at frame t and leads to "
            "frame t+1; the last row is zero with action_valid False."
        )
    texts = {}
    if state_text:
        texts = {"state_convention": state_text, "action_convention": action_text}
    return DatasetMeta(
        fps=layout.fps,
        image_size=cfg.image_size,
        cameras=cameras,
        task="",
        created_by=CREATED_BY,
        action_dim=action_dim,
        state_dim=state_dim,
        state_names=state_names,
        action_names=action_names,
        action_kind=layout.action_kind,
        image_policy=cfg.image_policy,
        extra={
            "source": source.describe(),
            "import": {
                "action_mode": layout.action_mode,
                "source_fps": layout.source_fps,
                "resampling": _resampling(layout),
                "config": {k: v for k, v in plain_config(cfg).items() if k != "progress"},
            },
        },
        **texts,
    )


def plain_config(cfg: ImportConfig) -> dict:
    out = dataclasses.asdict(cfg)
    out["cameras"] = dict(cfg.cameras)
    out["state_names"], out["action_names"] = list(cfg.state_names), list(cfg.action_names)
    return out


def _resampling(layout: ImportPlan) -> str:
    if layout.stride == 1:
        return "none"
    if layout.stride > 1:
        return f"stride {layout.stride} ({layout.source_fps:g} Hz -> {layout.fps:g} Hz)"
    return f"nearest timestamp ({layout.source_fps:g} Hz -> {layout.fps:g} Hz)"


def _check_overlap(cfg: ImportConfig) -> None:
    """Refuse an output folder that is, contains or lies inside the source folder."""
    out, src = Path(cfg.out_dir).resolve(), Path(cfg.src).resolve()
    if out == src or src in out.parents or out in src.parents:
        raise DatasetError(
            f"out_dir {cfg.out_dir} and src {cfg.src} overlap; write the import to a folder of "
            "its own"
        )


def _clear_previous(cfg: ImportConfig) -> None:
    """``overwrite``: delete an earlier wm-import output (its episode folders, meta.json and the
    summary; nothing else), refusing a dataset another tool wrote."""
    out = Path(cfg.out_dir)
    meta_path = out / META_FILE
    if not cfg.overwrite or not meta_path.exists():
        return
    try:
        created_by = json.loads(meta_path.read_text()).get("created_by")
    except (OSError, ValueError, AttributeError):
        created_by = None
    if created_by != CREATED_BY:
        raise DatasetError(
            f"{meta_path}: overwrite=true only replaces a wm-import output, but this dataset was "
            f"created by {created_by!r}; delete it yourself or pick another out_dir"
        )
    episodes = out / EPISODES_DIR
    if episodes.is_dir():
        for path in episodes.iterdir():
            ours = EPISODE_RE.match(path.name) or path.name.endswith(TMP_SUFFIX)
            if ours and path.is_dir():
                shutil.rmtree(path)
    for name in (META_FILE, SUMMARY_FILE):
        (out / name).unlink(missing_ok=True)


def _finalize_meta(writer: EpisodeWriter) -> DatasetMeta:
    """Statistics over every complete episode of the output, written into meta.json."""
    meta = writer.meta
    root = writer.root / EPISODES_DIR
    names = sorted(p.name for p in root.iterdir() if EPISODE_RE.match(p.name))
    tables = [load_steps(root / n / STEPS_FILE, meta.state_dim, meta.action_dim) for n in names]
    meta = dataclasses.replace(meta, **layout_stats(tables))
    meta.write(writer.root)
    return meta


def _write_summary(path: Path, result: ImportResult) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    os.replace(tmp, path)


def import_dataset(cfg: ImportConfig) -> ImportResult:
    """Import every selected, not yet imported episode of ``cfg.src`` into ``cfg.out_dir``.

    Raises:
        DatasetError: the source is not readable as a whole (unknown format or version, missing
            columns or files, nothing importable), the output folder is not ours to extend, or
            (``on_error=raise``) an episode has bad data.
    """
    _check_overlap(cfg)
    source = open_source(cfg)
    if not source.refs:
        raise DatasetError(f"{source.root}: no episodes in the range episodes={cfg.episodes!r}")
    layout = build_layout(cfg, source)
    meta = build_meta(cfg, source, layout)
    rank, world = rank_and_world()  # under torchrun: this rank's share of the episodes
    created = not (Path(cfg.out_dir) / META_FILE).exists()
    writer = None
    try:

        def setup() -> EpisodeWriter:
            _clear_previous(cfg)  # only now that the source has been checked
            return _open_writer(cfg, meta)  # creates meta.json

        writer = on_rank0(setup, rank, world)  # every rank stops if rank 0 is refused
        if rank != 0:
            writer = _open_writer(cfg, meta)
        return _import_episodes(cfg, source, layout, writer, rank, world)
    finally:
        if created and rank == 0 and writer is not None:
            _remove_if_empty(writer.root)


# Settings that may change between runs into one out_dir (which episodes, how to report).
_RERUN_FREE = ("episodes", "out_dir", "progress", "on_error", "overwrite")


def _check_same_import(cfg: ImportConfig, meta: DatasetMeta) -> None:
    """A rerun into an existing wm-import output must import the same source the same way:
    otherwise its episodes would mix sources or action derivations under one meta.json."""
    path = Path(cfg.out_dir) / META_FILE
    if not path.is_file():
        return
    old = json.loads(path.read_text()).get("extra", {})
    new = meta.extra
    differ = []
    if old.get("source", {}).get("path") != new["source"].get("path"):
        differ.append(f"src {old.get('source', {}).get('path')!r} vs {new['source'].get('path')!r}")
    before = old.get("import", {}).get("config", {})
    after = new["import"]["config"]
    differ += [f"{k} {before.get(k)!r} vs {after.get(k)!r}" for k in sorted(after)
               if k not in _RERUN_FREE and before.get(k) != after.get(k)]  # fmt: skip
    if differ:
        raise DatasetError(
            f"{path}: this folder holds another import ({'; '.join(differ)}); rerun with the "
            "same settings to continue it, or choose another out_dir (overwrite=true replaces it)"
        )


def _open_writer(cfg: ImportConfig, meta: DatasetMeta) -> EpisodeWriter:
    _check_same_import(cfg, meta)
    try:
        return EpisodeWriter(cfg.out_dir, meta)
    except DatasetError as exc:
        raise DatasetError(f"{exc} (or pass overwrite=true to replace a wm-import output)") from exc


def _remove_if_empty(root: Path) -> None:
    """Undo the folder, meta.json and episodes/ a run created when no episode got written."""
    episodes = root / EPISODES_DIR
    if episodes.is_dir() and any(EPISODE_RE.match(p.name) for p in episodes.iterdir()):
        return
    (root / META_FILE).unlink(missing_ok=True)
    for folder in (episodes, root):
        with contextlib.suppress(OSError):  # only when empty
            folder.rmdir()


def _import_episodes(
    cfg: ImportConfig,
    source,
    layout: ImportPlan,
    writer: EpisodeWriter,
    rank: int = 0,
    world: int = 1,
):
    on_rank0(writer.remove_stale_temps, rank, world)
    result = ImportResult(
        out_dir=str(writer.root),
        source=source.describe()["format"],
        episodes_selected=len(source.refs),
        source_fps=layout.source_fps,
        fps=layout.fps,
        resampling=_resampling(layout),
    )
    todo = [ref for ref in source.refs if not writer.is_complete(ref.index)]
    result.already_present = len(source.refs) - len(todo)
    todo = [ref for ref in todo if mine(ref.index, rank, world)]
    views = list(source.cameras.values())
    start = time.perf_counter()
    bar = tqdm(
        total=len(source.refs),
        initial=result.already_present,
        unit="ep",
        desc="wm-import",
        disable=not cfg.progress or rank != 0,  # rank 0's share stands for the others
    )
    failure: Exception | None = None  # on_error=raise: stops this rank, then all of them
    with bar:
        for ref in todo:
            try:
                episode = source.load(ref)
                steps, frames = convert_episode(episode, layout, views)
                writer.write(ref.index, frames, steps)
            except (DatasetError, ValueError, OSError) as exc:  # one episode's bad data or file
                if cfg.on_error == "raise":
                    failure = exc
                    break
                reason = (
                    str(exc) if isinstance(exc, DatasetError) else f"{type(exc).__name__}: {exc}"
                )
                result.skipped.append({"episode": ref.index, "source": ref.label, "reason": reason})
                bar.set_postfix(skipped=len(result.skipped))
            else:
                result.imported.append(ref.index)
                result.frames += len(steps)
                result.source_rows += len(episode.timestamps)
            bar.update(1)
    result.seconds = time.perf_counter() - start
    # One summary of every rank's imported and skipped episodes; a failure on any rank stops
    # every rank here (rather than leaving the others at a barrier).
    shared = gather((result, None if failure is None else f"{type(failure).__name__}: {failure}"),
                    world)  # fmt: skip
    if failure is not None:
        raise failure
    other = next((msg for _, msg in shared if msg), None)
    if other is not None:
        raise DatasetError(f"another wm-import rank failed, so this one stops too: {other}")
    if rank != 0:
        return result
    result = _merge([r for r, _ in shared])
    if not result.imported and not result.already_present:
        reasons = "; ".join(s["reason"] for s in result.skipped[:3])
        raise DatasetError(f"{source.root}: no episode could be imported; first reasons: {reasons}")
    _finalize_meta(writer)
    _write_summary(writer.root / SUMMARY_FILE, result)
    return result


def _merge(parts: list[ImportResult]) -> ImportResult:
    """The ranks' results as one (rank 0's settings; episodes, frames and time combined)."""
    if len(parts) == 1:
        return parts[0]
    out = dataclasses.replace(parts[0])
    out.imported = sorted(i for p in parts for i in p.imported)
    out.skipped = sorted((s for p in parts for s in p.skipped), key=lambda s: s["episode"])
    out.frames = sum(p.frames for p in parts)
    out.source_rows = sum(p.source_rows for p in parts)
    out.seconds = max(p.seconds for p in parts)  # the ranks ran side by side
    return out


def format_summary(result: ImportResult) -> str:
    lines = [
        f"wm-import: {len(result.imported)} episodes imported ({result.frames} frames, "
        f"{result.frames_per_s:.1f} frames/s), {result.already_present} already present, "
        f"{len(result.skipped)} skipped, from {result.source} ({result.resampling}) into "
        f"{result.out_dir}"
    ]
    lines += [f"  skipped {s['source']}: {s['reason']}" for s in result.skipped]
    return "\n".join(lines)


def config_from_mapping(raw: dict) -> ImportConfig:
    return from_mapping(ImportConfig, raw, where="wm-import")


def _run(cfg: ImportConfig) -> None:
    result = import_dataset(cfg)
    if rank_and_world()[0] == 0:  # one summary, all ranks' episodes
        print(format_summary(result))


def main() -> None:
    """Hydra entry point (``wm-import src=... out_dir=...``); see configs/import.yaml."""
    schema = plain_defaults(ImportConfig)
    # An untyped node, so that the command line can give a mapping (cameras={key: view}) or the
    # string form (cameras='key=view,key2=view2'); ImportConfig normalizes both.
    schema["cameras"] = None
    run_cli("import", config_from_mapping, _run, schema)


if __name__ == "__main__":
    main()
