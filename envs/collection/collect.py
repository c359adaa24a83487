"""wm-collect: record episodes of an env meeting the env contract (:mod:`envs.contract`; our
arm tasks with their scripted experts, any other with a random or your own policy) into an
episode dataset.

``wm-collect env=pick_place episodes=500 image_size=128 workers=2 out=data/pick_place``

Episode ``i`` always gets the same reset seed and expert mode (derived from ``seed`` and ``i``
only), whatever the number of workers; worker ``w`` of ``n`` records the missing indices
``todo[w::n]``. Re-running skips complete episodes and deletes stale ``*.tmp`` dirs, so a killed
run (even ``kill -9``) continues where it stopped. Format: see ``worldmodel.data.episodes``.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import queue
import time
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from envs.collection.collector import (
    build_meta,
    check_expert,
    episode_plan,
    expert_factory,
    make_env,
    record_shard,
)
from envs.collection.config import RENAMED, CollectConfig, config_from_dict
from envs.contract import require_env
from worldmodel.config import plain_defaults, run_cli
from worldmodel.data.writer import EpisodeWriter

__all__ = ["CollectConfig", "CollectResult", "collect", "episode_plan", "main"]


class CollectResult(NamedTuple):
    """What one collect run did."""

    root: Path
    written: list[int]  # episode indices recorded by this run, in completion order
    skipped: int  # episodes that were already complete
    frames: int  # frames recorded by this run (per camera)
    seconds: float  # wall-clock time of the recording


class _ListQueue(list):
    """In-process stand-in for a multiprocessing queue (workers=1)."""

    def put(self, item) -> None:
        self.append(item)


def prepare(cfg: CollectConfig) -> tuple[EpisodeWriter, list[int]]:
    """Check the env against the env contract (its recording part) and the expert, write/check
    meta.json, delete stale temp dirs, and list the missing episode indices."""
    expert_factory(cfg.expert_factory)  # fail here, not in every worker
    check_expert(cfg)
    env = make_env(cfg)
    try:
        require_env(env, evaluate=False)  # EnvContractError listing every problem
        writer = EpisodeWriter(cfg.out_dir, build_meta(cfg, env))
    finally:
        env.close()
    writer.remove_stale_temps()
    todo = [i for i in range(cfg.episodes) if not writer.is_complete(i)]
    return writer, todo


def _handle(msg: tuple, bar: tqdm, written: list[int]) -> int:
    """Apply one worker message; returns the frames it reports."""
    kind, index, payload = msg
    if kind == "error":
        where = f"at episode {index}" if index >= 0 else "before its first episode"
        raise RuntimeError(f"wm-collect worker failed {where}:\n{payload}")
    written.append(index)
    bar.update(1)
    return int(payload)


def _run_workers(cfg: CollectConfig, shards: list[list[int]], bar: tqdm, written: list[int]) -> int:
    """Run one process per shard; consume their messages until every episode is reported."""
    ctx = mp.get_context(cfg.start_method)
    out_queue = ctx.Queue()
    cfg_dict = dataclasses.asdict(cfg)
    procs = [ctx.Process(target=record_shard, args=(cfg_dict, s, out_queue)) for s in shards]
    for proc in procs:
        proc.start()
    frames, remaining = 0, sum(len(s) for s in shards)
    try:
        while remaining:
            try:
                msg = out_queue.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead or (all(p.exitcode is not None for p in procs) and out_queue.empty()):
                    raise RuntimeError(
                        f"wm-collect: worker(s) exited ({[p.exitcode for p in procs]}) with "
                        f"{remaining} episodes unreported"
                    ) from None
                continue
            frames += _handle(msg, bar, written)
            remaining -= 1
    finally:
        for proc in procs:
            if proc.is_alive() and remaining:
                proc.terminate()
            proc.join()
    return frames


def collect(cfg: CollectConfig) -> CollectResult:
    """Record the missing episodes ``0 .. cfg.episodes-1`` into ``cfg.out_dir`` (resumable)."""
    writer, todo = prepare(cfg)
    start = time.perf_counter()
    written: list[int] = []
    frames = 0
    bar = tqdm(
        total=cfg.episodes,
        initial=cfg.episodes - len(todo),
        unit="ep",
        desc=f"wm-collect {cfg.env}",
        disable=not cfg.progress,
    )
    with bar:
        workers = min(cfg.workers, len(todo))
        if workers == 1:
            local = _ListQueue()
            for index in todo:  # one episode at a time so the bar moves
                record_shard(dataclasses.asdict(cfg), [index], local)
                frames += _handle(local.pop(), bar, written)
        elif workers > 1:
            frames = _run_workers(cfg, [todo[w::workers] for w in range(workers)], bar, written)
    seconds = time.perf_counter() - start
    return CollectResult(writer.root, written, cfg.episodes - len(todo), frames, seconds)


def main() -> None:
    """Hydra entry point (``wm-collect key=value ...``); see configs/collect.yaml."""
    schema = plain_defaults(CollectConfig)
    run_cli("collect", config_from_dict, _report, schema=schema, renamed=RENAMED)


def _report(cfg: CollectConfig) -> None:
    result = collect(cfg)
    fps = result.frames / max(result.seconds, 1e-9)
    print(
        f"wm-collect: wrote {len(result.written)} episodes ({result.frames} frames, "
        f"{fps:.1f} frames/s), {result.skipped} already present, in {result.root}"
    )


if __name__ == "__main__":
    main()
