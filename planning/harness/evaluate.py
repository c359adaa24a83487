"""wm-eval: tasks x methods x episodes in simulation -> success table (Markdown + JSON).

Episode k of every (task, method) resets the env with ``seed + k`` and ``options={"task_id":
k}``: the same instance for every method. An episode ends at success or after the task's step
budget. Each finished episode is appended to ``<out_dir>/episodes.jsonl`` with a fingerprint of
everything that shapes it (method, planner config, budgets, the model's files, image size), so
a crash loses nothing and a rerun skips episodes already done under the same settings.

A task is one of our task names (``envs.TASKS``) or the id of any registered gymnasium env
meeting the env contract (``envs/contract.py``; ``module:Name-v0`` imports ``module``), checked
with a reset and a step, and against the world model's views, layout and rate, before the
first episode. Methods:

- ``random``: uniform actions in the box (rotation held for end-effector deltas);
- ``oracle_cem``: CEM on the simulator itself with the privileged task distance (upper bound;
  our tasks only);
- ``wm_cem`` / ``wm_icem``: goal-image MPC with the world model (``model=<folder>``);
- ``reference_cem``: the literal published CEM loop on the same model (slow; fewer episodes
  via ``episodes_per_method``).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context, parent_process
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from tqdm import tqdm

import envs
from envs.contract import episode_steps, is_project_env, require_env, resolve_env_id
from envs.contract import make_env as make_contract_env
from planning.cpu_memory import keep_freed_memory
from planning.harness.agents import (
    ENERGY_VIEWS,
    GRIPPER_EXECUTION,
    SUBGOAL_BUDGETS,
    Agent,
    OracleAgent,
    PlannerAgent,
    PolicyAgent,
    RandomAgent,
    ReferenceCEMAgent,
    check_camera,
    model_views,
    run_episode,
)
from planning.harness.results import (
    EpisodeLog,
    EpisodeResult,
    summarize,
    to_markdown,
    write_tables,
)
from planning.harness.video import file_stem
from planning.mpc import MPCConfig
from planning.planners import GRIPPER_EFFORT, PCEM, CEMConfig, ICEMConfig, make_planner
from planning.planners.reference import reference_cem_config
from worldmodel.config import from_mapping, plain_defaults, run_cli
from worldmodel.models.policy import POLICY_DIR
from worldmodel.models.views import parse_views

__all__ = ["EpisodeLog", "EvalConfig", "evaluate", "main", "make_agent", "run_episode"]


# method name -> needs a world model
METHODS = {
    "random": False, "oracle_cem": False, "wm_cem": True, "wm_icem": True, "reference_cem": True,
    "wm_flat": True, "wm_policy": True, "wm_pcem": True,
}  # fmt: skip
# the methods that plan through PlannerAgent: they use energy_views and MPCConfig's filters
PLANNER_AGENT_METHODS = ("wm_cem", "wm_icem", "wm_flat", "wm_pcem")
# the methods that see the final goal image alone (no sub-goal images): the flat planner (the
# cem config) and the model's learned policy (wm-train-policy, ``EvalConfig.policy``)
FINAL_GOAL_METHODS = ("wm_flat", "wm_policy")


ORACLE_CEM = CEMConfig(samples=32, iterations=3, top_k=8, horizon=1)


@dataclass(frozen=True)
class EvalConfig:
    """What wm-eval runs. ``tasks``: task names of ``envs.TASKS`` or gymnasium ids of envs
    meeting the env contract (see the module docstring); ``env_kwargs``: further
    ``gymnasium.make`` keywords for every task (our tasks get ``image_size`` and the model's
    views besides). ``episodes_per_method`` overrides ``episodes`` per method;
    ``max_steps`` overrides ``envs.MAX_EPISODE_STEPS`` (or an env's registered
    ``max_episode_steps``) per task; ``oracle_cem`` None = the
    ``cem`` config (same planner and budget as wm_cem); ``video_every`` k > 0 writes an mp4 of
    every k-th episode; ``subgoal_budgets`` maps a task to the step budget of each of its
    sub-goal images (see envs.tasks; a task without budgets plans to its final goal alone);
    None switches sub-goals on ``mpc.subgoal_energy_threshold``. ``energy_views`` maps a task
    to the views the wm_cem / wm_icem energy compares for each of its goal images (a view name,
    ``"exterior+wrist"``, or None for all the model's views; see ``agents.ENERGY_VIEWS``)."""

    tasks: tuple[str, ...] = ("reach",)
    methods: tuple[str, ...] = ("random", "oracle_cem")
    episodes: int = 10
    # null entries mean "episodes"; the literal published loop is slow
    episodes_per_method: Mapping[str, int | None] = field(
        default_factory=lambda: {**dict.fromkeys(METHODS), "wm_icem": 20, "reference_cem": 3}
    )
    first_episode: int = 0
    # True: episode k resets with seed + k and no task id, so its instance is drawn from the seed
    # (development episodes for tuning, never the evaluation instances; oracle_cem needs ids)
    dev_instances: bool = False
    # control steps per episode; null entries mean envs.MAX_EPISODE_STEPS
    max_steps: Mapping[str, int | None] = field(default_factory=lambda: dict.fromkeys(envs.TASKS))
    model: str | None = None
    policy: str | None = None  # wm_policy's policy folder; None: <model>/policy
    proposal: str | None = None  # wm_pcem's proposal; None: <policy>/proposal, else the policy
    # the tasks the flat planner (wm_flat) runs on (None: every task); pick-and-place is the
    # one whose final goal alone defeats it. wm_policy (a forward pass an action) runs on all.
    final_goal_tasks: tuple[str, ...] | None = ("pick_place",)
    out_dir: str = "outputs/eval"
    image_size: int = 64
    video_every: int = 0
    workers: int = 1
    seed: int = 0
    # the tuned planners of wm_cem / wm_icem (gripper effort, execution filters: agents.py)
    cem: CEMConfig = field(default_factory=lambda: CEMConfig(action_cost=GRIPPER_EFFORT))
    icem: ICEMConfig = field(default_factory=lambda: ICEMConfig(action_cost=GRIPPER_EFFORT))
    pcem: CEMConfig = field(default_factory=lambda: PCEM)
    reference_cem: CEMConfig = field(default_factory=reference_cem_config)
    # the simulator costs ~2 ms a sample (vs ~0.1 ms for the world model), so the upper bound
    # plans with a smaller budget (it still succeeds); None = the cem config
    oracle_cem: CEMConfig | None = field(default_factory=lambda: ORACLE_CEM)
    mpc: MPCConfig = field(default_factory=lambda: MPCConfig(**GRIPPER_EXECUTION))
    subgoal_budgets: Mapping[str, tuple[int, ...]] | None = field(
        default_factory=lambda: dict(SUBGOAL_BUDGETS)
    )
    energy_views: Mapping[str, tuple[str | None, ...]] | None = field(
        default_factory=lambda: dict(ENERGY_VIEWS)
    )
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = tuple(self.methods)
        object.__setattr__(self, "methods", values)
        if not values or any(v not in METHODS for v in values):
            raise ValueError(f"EvalConfig.methods must be a non-empty subset of {list(METHODS)}")
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if not self.tasks:
            raise ValueError(f"EvalConfig.tasks must name tasks ({list(envs.TASKS)}) or env ids")
        for task in self.tasks:
            try:
                resolve_env_id(task)
            except ValueError as exc:
                raise ValueError(f"EvalConfig.tasks: {exc}") from exc
        foreign = [t for t in self.tasks if not is_project_env(t)]
        if foreign and "oracle_cem" in self.methods:
            raise ValueError(
                f"EvalConfig: oracle_cem plans on our simulator's privileged state; {foreign} "
                "are not our tasks (use random and the world-model methods there)"
            )
        object.__setattr__(self, "env_kwargs", dict(self.env_kwargs))
        for name in ("episodes_per_method", "max_steps"):  # null entries: the default
            kept = {k: v for k, v in getattr(self, name).items() if v is not None}
            object.__setattr__(self, name, kept)
        # task keys: as in tasks, or an id without its module (Hydra keys cannot hold ':')
        known = (*envs.TASKS, *self.tasks, *(t.rpartition(":")[2] for t in self.tasks))
        bad = {**{k: v for k, v in self.episodes_per_method.items() if k not in METHODS},
               **{k: v for k, v in self.max_steps.items() if k not in known}}  # fmt: skip
        if bad:
            raise ValueError(f"EvalConfig: unknown method/task keys {sorted(bad)}")
        unbounded = [t for t in self.tasks if not self._given_steps(t) and not episode_steps(t)]
        if unbounded:
            raise ValueError(
                f"EvalConfig.max_steps: give a step budget for {unbounded} (no registered "
                "max_episode_steps)"
            )
        counts = [self.episodes, *self.episodes_per_method.values(), *self.max_steps.values()]
        if min(counts) < 1 or self.workers < 1 or self.first_episode < 0:
            raise ValueError("EvalConfig: episodes, step budgets and workers must be >= 1")
        if self.dev_instances and "oracle_cem" in self.methods:
            raise ValueError(
                "EvalConfig: oracle_cem needs evaluation instances (dev_instances=false)"
            )
        if self.video_every < 0 or not 16 <= self.image_size <= 2048:
            raise ValueError(f"EvalConfig: bad video_every/image_size {self.video_every}")
        if self.subgoal_budgets is not None:
            budgets = {str(k): tuple(int(b) for b in v) for k, v in self.subgoal_budgets.items()}
            if set(budgets) - set(known) or any(min(v, default=0) < 1 for v in budgets.values()):
                raise ValueError(f"EvalConfig.subgoal_budgets: bad tasks or budgets {budgets}")
            object.__setattr__(self, "subgoal_budgets", budgets)
        views = {}
        for task, spec in (self.energy_views or {}).items():
            if task in known and (spec is None or (  # all views: the default energy
                not isinstance(spec, str) and spec and all(v is None for v in spec)
            )):  # fmt: skip
                continue
            if task not in known or isinstance(spec, str) or not spec:
                raise ValueError(
                    f"EvalConfig.energy_views: {task!r} needs a task name and a list with the views"
                    f" of each goal image (e.g. [exterior] or [exterior, null]), got {spec!r}"
                )
            views[str(task)] = tuple(  # canonical: the order of views in a mask does not matter
                None if v is None else "+".join(sorted(parse_views(v))) for v in spec
            )
        object.__setattr__(self, "energy_views", views)

    def runs(self, task: str, method: str) -> bool:
        """Whether ``method`` runs on ``task`` (the flat planner: ``final_goal_tasks``)."""
        return method != "wm_flat" or self.final_goal_tasks is None or task in self.final_goal_tasks

    def _given_steps(self, task: str) -> int | None:
        return self.max_steps.get(task) or self.max_steps.get(task.rpartition(":")[2])

    def steps_for(self, task: str) -> int:
        return int(self._given_steps(task) or episode_steps(task))

    def episode_ids(self, method: str) -> range:
        n = int(self.episodes_per_method.get(method, self.episodes))
        return range(self.first_episode, self.first_episode + n)


# MPCConfig's action filters: PlannerAgent and PolicyAgent execute through them.
_EXECUTION_KEYS = ("gripper_close_at", "hold_arm_on_gripper")
_FILTERED_METHODS = (*PLANNER_AGENT_METHODS, "wm_policy")


def _mpc_keys(mpc: MPCConfig, method: str) -> dict | None:
    """The MPC settings an episode of ``method`` depends on; the action filters only where
    they are set and used, so logs from before the filters keep their fingerprints."""
    if method == "random":
        return None
    keys = asdict(mpc)
    for name in _EXECUTION_KEYS:
        if keys[name] in (None, False) or method not in _FILTERED_METHODS:
            del keys[name]
    return keys


# a model folder's own evaluation log lives here; it is not part of what the model is
MODEL_EVAL_DIR = "eval"


def model_digest(model: str | None, whole: bool = False) -> str | None:
    """What identifies a model folder in fingerprints: a SHA-1 over every file in it (relative
    path and bytes; the folder's ``eval/`` log and its ``policy/``, which wm_policy episodes
    fingerprint on their own, excluded unless ``whole``), so episodes of a model retrained in
    place are never reused for the new weights, and a copy of the same model elsewhere reuses
    them. A name that is not a folder (tests' stand-ins) identifies itself."""
    if model is None:
        return None
    folder = Path(model)
    if not folder.is_dir():
        return model
    skip = () if whole else (MODEL_EVAL_DIR, POLICY_DIR)
    files = sorted(
        f for f in folder.rglob("*")
        if f.is_file() and f.relative_to(folder).parts[0] not in skip
    )  # fmt: skip
    stats = [(f.relative_to(folder).as_posix(), f.stat()) for f in files]
    stamp = tuple((name, st.st_size, st.st_mtime_ns) for name, st in stats)
    return _digest_files(str(folder.resolve()), stamp)


@functools.lru_cache(maxsize=16)
def _digest_files(folder: str, stamp: tuple) -> str:  # stamp: (name, size, mtime) per file
    h = hashlib.sha1()
    for name, _, _ in stamp:
        h.update(name.encode() + b"\0")
        with open(Path(folder) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return "sha1:" + h.hexdigest()


def fingerprint(cfg: EvalConfig, task: str, method: str) -> str:
    """Hash of every setting that shapes an episode of (task, method)."""
    planner = {"oracle_cem": cfg.oracle_cem or cfg.cem, "wm_cem": cfg.cem, "wm_icem": cfg.icem,
               "reference_cem": cfg.reference_cem, "wm_flat": cfg.cem,
               "wm_pcem": cfg.pcem}.get(method)  # fmt: skip
    sees_budgets = METHODS[method] and method not in FINAL_GOAL_METHODS
    keys = {
        "method": method, "steps": cfg.steps_for(task), "image_size": cfg.image_size,
        "seed": cfg.seed, "planner": None if planner is None else asdict(planner),
        "mpc": _mpc_keys(cfg.mpc, method),
        "model": model_digest(cfg.model) if METHODS[method] else None,
        "budgets": (cfg.subgoal_budgets or {}).get(task) if sees_budgets else None,
    }  # fmt: skip
    if method in ("wm_policy", "wm_pcem"):
        folder = policy_folder(cfg) if method == "wm_policy" else proposal_folder(cfg)
        keys["policy"] = model_digest(str(folder), whole=True)
    views = cfg.energy_views.get(task) if method in PLANNER_AGENT_METHODS else None
    if views is not None:  # only when set, so logs from before the option keep their prints
        keys["energy_views"] = views
    if cfg.dev_instances:  # likewise
        keys["dev_instances"] = True
    if cfg.env_kwargs:  # likewise
        keys["env_kwargs"] = cfg.env_kwargs
    return hashlib.sha1(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()[:12]


def config_from_dict(raw: dict) -> EvalConfig:
    """EvalConfig from the (Hydra) mapping (:func:`worldmodel.config.from_mapping`): nested
    planner/MPC configs override the defaults field by field; unknown keys are named."""
    return from_mapping(EvalConfig, raw, where="wm-eval")


def load_model(cfg: EvalConfig):
    """The world model of ``cfg.model`` (None when no model is given)."""
    if cfg.model is None:
        return None
    folder = Path(cfg.model)
    if not folder.is_dir():
        raise FileNotFoundError(f"wm-eval: model folder {folder} does not exist (model=...)")
    from worldmodel.world_model import WorldModel

    return WorldModel.load(folder)


def policy_folder(cfg: EvalConfig) -> Path:
    """wm_policy's policy: ``cfg.policy``, else the model folder's ``policy/``."""
    return Path(cfg.policy) if cfg.policy else Path(cfg.model or ".") / POLICY_DIR


def proposal_folder(cfg: EvalConfig) -> Path:
    """wm_pcem's proposal policy: ``cfg.proposal``, else ``<policy folder>/proposal`` when it
    holds one, else wm_policy's policy itself."""
    from planning.policy import proposal_folder as default_proposal

    return Path(cfg.proposal) if cfg.proposal else default_proposal(policy_folder(cfg))


def make_agent(method: str, cfg: EvalConfig, dynamics) -> Agent:
    """The agent of ``method``; world-model methods need ``dynamics``."""
    if METHODS[method] and dynamics is None:
        raise ValueError(f"wm-eval: method {method!r} needs a world model (model=<folder>)")
    budgets = cfg.subgoal_budgets
    if method == "random":
        return RandomAgent(cfg.seed)
    if method == "oracle_cem":
        planner = make_planner("cem", cfg.oracle_cem or cfg.cem)
        return OracleAgent(planner, cfg.mpc.warm_start, cfg.mpc.seed)
    if method in ("wm_cem", "wm_icem"):
        name = method.removeprefix("wm_")
        planner = make_planner(name, cfg.cem if name == "cem" else cfg.icem, dynamics)
        return PlannerAgent(dynamics, planner, cfg.mpc, budgets, cfg.energy_views)
    if method == "wm_flat":  # no budgets fit: the final goal image alone, with its views
        planner = make_planner("cem", cfg.cem, dynamics)
        views = {t: v[-1:] for t, v in (cfg.energy_views or {}).items() if v is not None}
        return PlannerAgent(dynamics, planner, cfg.mpc, {}, views)
    if method == "wm_pcem":
        from planning.policy import load_policy, policy_proposal

        proposal = policy_proposal(load_policy(dynamics, proposal_folder(cfg)))
        planner = make_planner("cem", cfg.pcem, dynamics)
        return PlannerAgent(dynamics, planner, cfg.mpc, budgets, cfg.energy_views, proposal)
    if method == "wm_policy":
        from planning.policy import load_policy

        return PolicyAgent(dynamics, load_policy(dynamics, policy_folder(cfg)), cfg.mpc)
    return ReferenceCEMAgent(dynamics, cfg.reference_cem, budgets, cfg.mpc.device)


def make_env(cfg: EvalConfig, task: str, views: tuple[str, ...] = ("exterior",)) -> gym.Env:
    """The task's env; ``views``: what the world model sees side by side (``model_views``),
    rendered by our envs (an env that is not ours renders what it declares)."""
    return make_contract_env(
        task, image_size=cfg.image_size, views=views, max_episode_steps=cfg.steps_for(task),
        env_kwargs=cfg.env_kwargs,
    )  # fmt: skip


def check_tasks(cfg: EvalConfig, model) -> None:
    """Before any episode: every task's env meets the env contract (a reset and a step) and,
    with ``model``, has its views, state/action layout and rate (:func:`check_camera`);
    EnvContractError / ValueError naming the task otherwise."""
    for task in cfg.tasks:
        views = model_views(model) if model is not None else ("exterior",)
        env = None
        try:
            env = make_env(cfg, task, views)  # our envs refuse views they cannot render
            require_env(env)
            if model is not None:
                check_camera(model, env)
        except ValueError as exc:  # keep its type (EnvContractError, CameraMismatchError)
            exc.args = (f"wm-eval task {task}: {exc}", *exc.args[1:])
            raise
        finally:
            if env is not None:
                env.close()


def _video_path(cfg: EvalConfig, task: str, method: str, k: int) -> Path | None:
    if cfg.video_every <= 0 or k % cfg.video_every:
        return None
    return Path(cfg.out_dir) / "videos" / f"{file_stem(task)}_{method}_{k:03d}.mp4"


_WORKER: dict = {}


def _episode_job(cfg: EvalConfig, task: str, method: str, k: int) -> EpisodeResult:
    """One episode in a worker process; env, model and agents are built once per process."""
    torch.set_num_threads(1)
    if "model" not in _WORKER:
        if parent_process() is not None:
            keep_freed_memory()  # a spawned worker: the parent's setting did not carry over
        _WORKER["model"] = load_model(cfg) if any(METHODS[m] for m in cfg.methods) else None
    if (task, method) not in _WORKER:
        views = model_views(_WORKER["model"]) if METHODS[method] else ("exterior",)
        _WORKER[(task, method)] = (
            make_env(cfg, task, views),
            make_agent(method, cfg, _WORKER["model"]),
        )
    env, agent = _WORKER[(task, method)]
    video = _video_path(cfg, task, method, k)
    return run_episode(
        env, agent, method, k, cfg.seed + k, cfg.steps_for(task), video, cfg.dev_instances, task
    )


def _todo(cfg: EvalConfig, log: EpisodeLog, has_model: bool) -> list[tuple[str, str, int]]:
    jobs = []
    for method in cfg.methods:
        if METHODS[method] and not has_model:
            print(f"wm-eval: skipping {method}: it needs a world model (model=<folder>)")
            continue
        for task in cfg.tasks:
            if not cfg.runs(task, method):
                continue
            for k in cfg.episode_ids(method):
                if log.get(task, method, k, fingerprint(cfg, task, method)) is None:
                    jobs.append((task, method, k))
    return jobs


def _run_jobs(cfg: EvalConfig, jobs: list, log: EpisodeLog) -> None:
    bar = tqdm(total=len(jobs), desc="wm-eval episodes")

    def record(task: str, method: str, res: EpisodeResult) -> None:
        log.append(res, fingerprint(cfg, task, method))
        bar.set_postfix_str(f"{task}/{method} #{res.episode} {'ok' if res.success else 'fail'}")
        bar.update()

    if cfg.workers == 1:
        for task, method, k in jobs:
            record(task, method, _episode_job(cfg, task, method, k))
    else:
        with ProcessPoolExecutor(cfg.workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_episode_job, cfg, *job): job for job in jobs}
            for fut in as_completed(futures):
                task, method, _ = futures[fut]
                record(task, method, fut.result())
    bar.close()


def logged_results(cfg: EvalConfig, log: EpisodeLog, has_model: bool) -> list[EpisodeResult]:
    """The episodes of ``cfg`` found in ``log`` under their fingerprints, in table order (task,
    then method); model methods only ``has_model``."""
    return [
        r
        for task in cfg.tasks
        for method in cfg.methods
        if (has_model or not METHODS[method]) and cfg.runs(task, method)
        for k in cfg.episode_ids(method)
        if (r := log.get(task, method, k, fingerprint(cfg, task, method))) is not None
    ]


def evaluate(cfg: EvalConfig) -> list[EpisodeResult]:
    """Run what is not done yet, write results.md/json into ``cfg.out_dir``, print the table."""
    out = Path(cfg.out_dir)
    log = EpisodeLog(out / "episodes.jsonl")
    _WORKER.clear()
    has_model = cfg.model is not None
    if has_model:
        _WORKER["model"] = load_model(cfg)  # fail early on a bad folder, reuse when sequential
    model_used = has_model and any(METHODS[m] for m in cfg.methods)
    check_tasks(cfg, _WORKER["model"] if model_used else None)
    jobs = _todo(cfg, log, has_model)
    _run_jobs(cfg, jobs, log)
    _WORKER.clear()
    results = logged_results(cfg, log, has_model)
    rows = summarize(results)
    header = f"# wm-eval\n\nmodel: {cfg.model or 'none'}; image size {cfg.image_size}"
    write_tables(rows, results, out, header=header)
    print(to_markdown(rows))
    print(f"wm-eval: {len(jobs)} episodes run, {len(results) - len(jobs)} reused -> {out}")
    return results


def main() -> None:
    """Entry point ``wm-eval`` (Hydra, configs/eval.yaml over the EvalConfig defaults)."""
    run_cli("eval", config_from_dict, _run, schema=plain_defaults(EvalConfig))


def _run(cfg: EvalConfig) -> None:
    keep_freed_memory()  # workers call it too (_episode_job)
    evaluate(cfg)


if __name__ == "__main__":
    main()
