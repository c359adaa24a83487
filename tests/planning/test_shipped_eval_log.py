"""The evaluation table in docs/results.md is what `make eval` gives for the model we ship.

models/shipped/eval/episodes.jsonl is the log of that run. Its fingerprints hash every setting
of an episode and the model's files, so these tests fail when the model, configs/eval.yaml or
the Makefile's `eval` command changes without the evaluation being rerun and committed, and
when docs/results.md's or the log's results.md table is not the one the log gives.
"""

import re
import shlex
from pathlib import Path

import planning.harness.evaluate as ev
from planning.harness.results import EpisodeLog, summarize, to_markdown
from worldmodel.config import compose, plain_defaults

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / "models" / "shipped" / "eval"


def make_eval_overrides(makefile: str) -> list[str]:
    """The key=value arguments of wm-eval in the Makefile's `eval` recipe."""
    recipe = re.search(r"^eval:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe, "Makefile: no eval target"
    command = recipe.group(1).replace("\\\n", " ")
    args = shlex.split(command[command.index("wm-eval") :].splitlines()[0])[1:]
    assert args and all("=" in a for a in args), args
    return args


def test_make_eval_overrides_are_read_from_the_recipe():
    makefile = "x: y\n\techo\n\neval: venv\n\t$(VENV)/bin/wm-eval a=1 \\\n\t\tb=[c,d]\n\nz:\n\tq\n"
    assert make_eval_overrides(makefile) == ["a=1", "b=[c,d]"]


def _make_eval_config() -> ev.EvalConfig:
    overrides = make_eval_overrides((ROOT / "Makefile").read_text())
    raw = compose("eval", overrides, plain_defaults(ev.EvalConfig))
    assert Path(raw["model"]).resolve() == (ROOT / "models" / "shipped").resolve()
    return ev.config_from_dict({**raw, "model": str(ROOT / "models" / "shipped")})


def test_the_committed_log_holds_every_episode_make_eval_runs():
    cfg = _make_eval_config()
    log = EpisodeLog(LOG_DIR / "episodes.jsonl")
    missing = ev._todo(cfg, log, has_model=True)
    assert not missing, (
        f"{len(missing)} episodes of `make eval` (e.g. {missing[:3]}) are not in "
        f"{LOG_DIR / 'episodes.jsonl'} under the current model and settings: run `make eval` "
        "and copy outputs/eval_shipped/{episodes.jsonl,results.md} there, then the table in docs/results.md"
    )


def test_results_md_and_the_docs_show_the_logged_table():
    cfg = _make_eval_config()
    log = EpisodeLog(LOG_DIR / "episodes.jsonl")
    results = ev.logged_results(cfg, log, has_model=True)
    runs = [(t, m) for t in cfg.tasks for m in cfg.methods if cfg.runs(t, m)]
    assert len(results) == sum(len(cfg.episode_ids(m)) for _, m in runs)
    table = to_markdown(summarize(results))
    assert table in (LOG_DIR / "results.md").read_text()
    assert table in (ROOT / "docs" / "results.md").read_text(), "docs/results.md's table is stale"
