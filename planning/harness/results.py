"""Evaluation records and the success table (Markdown + JSON).

One :class:`EpisodeResult` per (task, method, episode); :func:`summarize` groups them into
:class:`TableRow`s with success rate, a 95% Wilson interval, mean steps and seconds per action
(median and p90 over every planned action of the group). :class:`EpisodeLog` is wm-eval's
append-only record of finished episodes (what a rerun resumes from).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm


@dataclass
class EpisodeResult:
    """Outcome of one evaluation episode."""

    task: str
    method: str
    episode: int
    seed: int
    success: bool
    steps: int
    seconds_per_action: list[float] = field(default_factory=list)
    final_distance: float = float("nan")
    video: str | None = None


@dataclass(frozen=True)
class TableRow:
    """Aggregate of one (task, method) cell group."""

    task: str
    method: str
    episodes: int
    successes: int
    success_rate: float
    success_ci95: tuple[float, float]
    mean_steps: float
    s_per_action_median: float
    s_per_action_p90: float
    mean_final_distance: float


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (honest error bars for small n)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarize(results: Iterable[EpisodeResult]) -> list[TableRow]:
    """Group results by (task, method) in first-seen order and aggregate each group."""
    groups: dict[tuple[str, str], list[EpisodeResult]] = {}
    for r in results:
        groups.setdefault((r.task, r.method), []).append(r)
    rows = []
    for (task, method), rs in groups.items():
        times = np.array([t for r in rs for t in r.seconds_per_action], dtype=float)
        wins = sum(r.success for r in rs)
        dists = np.array([r.final_distance for r in rs], dtype=float)
        rows.append(
            TableRow(
                task=task,
                method=method,
                episodes=len(rs),
                successes=wins,
                success_rate=wins / len(rs),
                success_ci95=wilson_interval(wins, len(rs)),
                mean_steps=float(np.mean([r.steps for r in rs])),
                s_per_action_median=float(np.median(times)) if times.size else float("nan"),
                s_per_action_p90=float(np.percentile(times, 90)) if times.size else float("nan"),
                mean_final_distance=float(np.nanmean(dists))
                if np.isfinite(dists).any()
                else float("nan"),
            )
        )
    return rows


def to_markdown(rows: Sequence[TableRow]) -> str:
    """The success table as GitHub Markdown, one row per (task, method)."""
    lines = [
        "| task | method | success | 95% CI | mean steps | s/action (median) | s/action (p90) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r.success_ci95
        lines.append(
            f"| {r.task} | {r.method} | {100 * r.success_rate:.0f}% ({r.successes}/{r.episodes}) "
            f"| {100 * lo:.0f}–{100 * hi:.0f}% | {r.mean_steps:.1f} "
            f"| {r.s_per_action_median:.3f} | {r.s_per_action_p90:.3f} |"
        )
    return "\n".join(lines) + "\n"


def write_tables(
    rows: Sequence[TableRow], results: Sequence[EpisodeResult], out_dir: Path, header: str = ""
) -> tuple[Path, Path]:
    """Write ``results.md`` (header + table) and ``results.json`` (rows + every episode)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out_dir / "results.md", out_dir / "results.json"
    md_path.write_text((header + "\n\n" if header else "") + to_markdown(rows))
    payload = {"rows": [asdict(r) for r in rows], "episodes": [asdict(r) for r in results]}
    json_path.write_text(json.dumps(payload, indent=1))
    return md_path, json_path


class EpisodeLog:
    """Append-only JSONL of finished episodes, keyed by (task, method, episode, fingerprint).

    A line that cannot be read (torn by a killed run, or garbage) is skipped with a warning:
    its episode simply runs again. An append after a torn last line starts on a new line, so a
    new record never joins the torn one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._done: dict[tuple, EpisodeResult] = {}
        if path.exists():
            # Bytes that are not UTF-8 spoil only their own line (it then fails to parse).
            text = path.read_bytes().decode("utf-8", errors="replace")
            for n, line in enumerate(text.split("\n"), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    res = EpisodeResult(**rec["result"])
                    key = (res.task, res.method, res.episode, rec["fingerprint"])
                    hash(key)  # a fingerprint that is a list or object cannot key the log
                except (json.JSONDecodeError, KeyError, TypeError) as err:
                    tqdm.write(f"wm-eval: skipping unreadable line {n} of {path}: {err}")
                    continue
                self._done[key] = res

    def get(self, task: str, method: str, episode: int, fp: str) -> EpisodeResult | None:
        return self._done.get((task, method, episode, fp))

    def append(self, result: EpisodeResult, fp: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"fingerprint": fp, "result": asdict(result)}) + "\n"
        with self.path.open("a+b") as f:
            f.seek(0, 2)
            if f.tell() > 0:  # a torn last line (killed mid-write) has no newline: end it first
                f.seek(-1, 2)
                if f.read(1) != b"\n":
                    line = "\n" + line
            f.write(line.encode())  # one write, always at the end (append mode)
            f.flush()
        self._done[(result.task, result.method, result.episode, fp)] = result
