"""Success table aggregation and episode videos."""

import json

import imageio.v2 as imageio
import numpy as np
import pytest

from planning.harness.results import (
    EpisodeResult,
    summarize,
    to_markdown,
    wilson_interval,
    write_tables,
)
from planning.harness.video import compose_frame, energy_panel, write_episode_video


def _results():
    return [
        EpisodeResult("reach", "random", 0, 0, False, 30, [0.001, 0.002]),
        EpisodeResult("reach", "random", 1, 1, True, 10, [0.003]),
        EpisodeResult("reach", "wm_cem", 0, 0, True, 5, [0.5, 0.7, 0.9, 1.1, 0.6]),
    ]


def test_summarize_groups_and_aggregates():
    rows = summarize(_results())
    assert [(r.task, r.method) for r in rows] == [("reach", "random"), ("reach", "wm_cem")]
    rnd, wm = rows
    assert rnd.successes == 1 and rnd.episodes == 2 and rnd.success_rate == 0.5
    assert rnd.mean_steps == 20.0
    assert rnd.s_per_action_median == pytest.approx(0.002)
    assert wm.s_per_action_median == pytest.approx(0.7)
    assert wm.s_per_action_p90 == pytest.approx(np.percentile([0.5, 0.7, 0.9, 1.1, 0.6], 90))


def test_wilson_interval_contains_rate_and_shrinks_with_n():
    lo10, hi10 = wilson_interval(7, 10)
    lo100, hi100 = wilson_interval(70, 100)
    assert lo10 < 0.7 < hi10 and lo100 < 0.7 < hi100
    assert hi100 - lo100 < hi10 - lo10
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0


def test_tables_written(tmp_path):
    rows = summarize(_results())
    md, js = write_tables(rows, _results(), tmp_path, header="# Eval")
    text = md.read_text()
    assert text.startswith("# Eval") and "| reach | wm_cem | 100% (1/1)" in text
    data = json.loads(js.read_text())
    assert len(data["rows"]) == 2 and len(data["episodes"]) == 3
    assert to_markdown(rows).count("\n") == 4


def test_energy_panel_draws_only_up_to_current_step():
    e = [5.0, 4.0, 3.0, 1.0]
    early, late = energy_panel(e, 64, 0), energy_panel(e, 64, 3)
    assert (late != 24).any(axis=-1).sum() > (early != 24).any(axis=-1).sum()


def test_episode_video_round_trip(tmp_path):
    obs = [np.full((32, 32, 3), 10 * t, np.uint8) for t in range(5)]
    goals = [np.full((32, 32, 3), 200, np.uint8)] * 5
    path = write_episode_video(tmp_path / "ep.mp4", obs, goals, [4, 3, 2, 1.5, 1.0])
    frames = imageio.mimread(path)
    assert len(frames) == 5 and frames[0].shape[1] == 3 * frames[0].shape[0]
    assert compose_frame(obs[0], goals[0], [1.0], 0).shape == (32, 96, 3)
    with pytest.raises(ValueError, match="one goal and energy per observation"):
        write_episode_video(tmp_path / "bad.mp4", obs, goals[:2], [1.0] * 5)
