"""wm-eval: end to end on tiny budgets, resumable JSONL, config validation, agents."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import planning.harness.evaluate as ev
from planning.harness.agents import (
    ENERGY_VIEWS,
    GRIPPER_EXECUTION,
    RandomAgent,
    goal_schedule,
)
from planning.harness.evaluate import EvalConfig, config_from_dict, evaluate
from planning.mpc import MPCConfig
from planning.planners import GRIPPER_EFFORT
from planning.planners.cem import CEMConfig
from planning.planners.icem import ICEMConfig
from planning.toy import ToyDynamics

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY_CEM = CEMConfig(samples=24, iterations=2, top_k=6)


def _cfg(tmp_path, **kw) -> EvalConfig:
    base = dict(
        tasks=("reach",), methods=("random", "oracle_cem"), episodes=2, max_steps={"reach": 6},
        image_size=32, out_dir=str(tmp_path), cem=TINY_CEM,
    )  # fmt: skip
    return EvalConfig(**{**base, **kw})


def test_evaluate_end_to_end_writes_tables_and_oracle_beats_random(tmp_path, capsys):
    results = evaluate(_cfg(tmp_path, video_every=2))
    out = capsys.readouterr().out
    assert "| reach | random |" in out and "| reach | oracle_cem |" in out
    data = json.loads((tmp_path / "results.json").read_text())
    assert [(r["method"], r["episodes"]) for r in data["rows"]] == [
        ("random", 2), ("oracle_cem", 2),
    ]  # fmt: skip
    oracle = [r for r in results if r.method == "oracle_cem"]
    rand = [r for r in results if r.method == "random"]
    assert all(r.success and r.steps <= 6 for r in oracle)
    assert np.mean([r.final_distance for r in oracle]) < np.mean([r.final_distance for r in rand])
    assert all(len(r.seconds_per_action) == r.steps for r in results)
    assert (tmp_path / "results.md").read_text().startswith("# wm-eval")
    videos = sorted(p.name for p in (tmp_path / "videos").iterdir())
    assert videos == ["reach_oracle_cem_000.mp4", "reach_random_000.mp4"]  # every 2nd episode


def test_rerun_skips_done_episodes_and_reruns_changed_settings(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path, methods=("random",), episodes=1)
    evaluate(cfg)
    lines = (tmp_path / "episodes.jsonl").read_text().splitlines()
    calls = []
    real_job = ev._episode_job
    monkeypatch.setattr(ev, "_episode_job", lambda *a: calls.append(a[1:]) or real_job(*a))
    first = evaluate(replace(cfg, methods=("random", "oracle_cem")))
    assert calls == [("reach", "oracle_cem", 0)]  # random #0 was reused
    evaluate(replace(cfg, methods=("random", "oracle_cem"), episodes=2))
    assert calls[1:] == [("reach", "random", 1), ("reach", "oracle_cem", 1)]
    calls.clear()
    with (tmp_path / "episodes.jsonl").open("a") as f:
        f.write('{"fingerprint": "x", "result": {"task"')  # a crash mid-line
    again = evaluate(replace(cfg, methods=("random", "oracle_cem")))
    assert calls == [] and again == first
    evaluate(replace(cfg, max_steps={"reach": 5}))  # another budget: not the same episode
    assert calls == [("reach", "random", 0)]
    assert len(lines) == 1


def test_energy_views_enter_the_fingerprint_of_world_model_methods_only_when_set(tmp_path):
    cfg = _cfg(tmp_path, tasks=("reach", "grasp"), energy_views={"reach": ["exterior"]})
    plain = replace(cfg, energy_views={})
    assert ev.fingerprint(cfg, "reach", "wm_cem") != ev.fingerprint(plain, "reach", "wm_cem")
    assert ev.fingerprint(cfg, "grasp", "wm_cem") == ev.fingerprint(plain, "grasp", "wm_cem")
    for all_views in (None, [None]):  # null in eval.yaml, or null for its one goal image
        unset = replace(cfg, energy_views={"reach": all_views})
        assert unset.energy_views == {}
        assert ev.fingerprint(unset, "reach", "wm_cem") == ev.fingerprint(plain, "reach", "wm_cem")
    a, b = (replace(cfg, energy_views={"reach": [v]}) for v in ("wrist+exterior", "exterior+wrist"))
    assert a.energy_views == b.energy_views  # the order of views in a mask does not matter
    for method in ("oracle_cem", "reference_cem", "random"):  # they do not use it
        assert ev.fingerprint(cfg, "reach", method) == ev.fingerprint(plain, "reach", method)


def test_gripper_execution_enters_the_fingerprint_of_world_model_methods_only_when_set(tmp_path):
    plain = _cfg(tmp_path, tasks=("grasp",), mpc=MPCConfig())
    filtered = replace(plain, mpc=MPCConfig(**GRIPPER_EXECUTION))
    for method in ("wm_cem", "wm_icem"):
        assert ev.fingerprint(filtered, "grasp", method) != ev.fingerprint(plain, "grasp", method)
    for method in ("oracle_cem", "reference_cem", "random"):  # they execute their plans as is
        assert ev.fingerprint(filtered, "grasp", method) == ev.fingerprint(plain, "grasp", method)
    agent = ev.make_agent("wm_cem", filtered, ToyDynamics())
    assert agent.mpc.cfg.gripper_close_at == GRIPPER_EXECUTION["gripper_close_at"]


def test_dev_instances_are_drawn_from_the_seed_and_kept_apart_from_evaluation_ones(tmp_path):
    cfg = _cfg(tmp_path, methods=("random",), episodes=2, seed=100_000)
    dev = replace(cfg, dev_instances=True)
    assert ev.fingerprint(dev, "reach", "random") != ev.fingerprint(cfg, "reach", "random")
    results = evaluate(dev)
    logged = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert [r["result"]["episode"] for r in logged] == [0, 1]
    env = ev.make_env(dev, "reach", ("exterior",))
    starts = []
    for k in (0, 1):  # each episode's instance is the one its seed draws, without a task id
        _obs, info = env.reset(seed=100_000 + k)
        assert info["task_id"] is None
        starts.append(info["goal_rgb"])
    _obs, info = env.reset(seed=100_000, options={"task_id": 0})
    assert not np.array_equal(info["goal_rgb"], starts[0])  # evaluation instance 0 differs
    env.close()
    evaluated = evaluate(replace(cfg, out_dir=str(tmp_path / "eval")))
    # episode 0 sends the same random actions in both runs (the agent's rng is seeded by the
    # task id, None read as 0): only the instance differs
    assert results[0].final_distance != pytest.approx(evaluated[0].final_distance)
    with pytest.raises(ValueError, match="oracle_cem"):
        replace(cfg, methods=("oracle_cem",), dev_instances=True)


def test_fingerprints_of_logs_written_before_energy_views_are_unchanged(monkeypatch):
    # computed by the code of commit 72f923f, before the option existed, when a model was
    # identified by its folder's name: with that identity, nothing else in them changed
    monkeypatch.setattr(ev, "model_digest", lambda model: model)
    cfg = EvalConfig(tasks=("reach", "pick_place"), methods=("wm_cem", "wm_icem"),
                     model="models/shipped", out_dir="unused", cem=CEMConfig(),
                     icem=ICEMConfig(), mpc=MPCConfig())  # the dataclass defaults of then  # fmt: skip
    assert ev.fingerprint(cfg, "reach", "wm_cem") == "b2b21c1e72e4"
    assert ev.fingerprint(cfg, "pick_place", "wm_icem") == "e83837f3816c"


def _model_folder(root: Path, weights: bytes) -> Path:
    (root / "encoder").mkdir(parents=True)
    (root / "world_model.json").write_text('{"format_version": 1}')
    (root / "predictor.safetensors").write_bytes(weights)
    (root / "encoder" / "model.safetensors").write_bytes(b"enc")
    return root


def test_a_model_is_identified_by_its_files_not_its_folder_name(tmp_path):
    a = _model_folder(tmp_path / "a", b"weights")
    b = _model_folder(tmp_path / "b", b"weights")
    assert ev.model_digest(str(a)) == ev.model_digest(str(b)) != ev.model_digest(None)
    cfg = _cfg(tmp_path, model=str(a))
    moved = replace(cfg, model=str(b))
    assert ev.fingerprint(cfg, "reach", "wm_cem") == ev.fingerprint(moved, "reach", "wm_cem")
    before = {m: ev.fingerprint(cfg, "reach", m) for m in ev.METHODS}
    (a / "eval").mkdir()  # the folder's own evaluation log is not part of the model
    (a / "eval" / "episodes.jsonl").write_text("{}\n")
    assert {m: ev.fingerprint(cfg, "reach", m) for m in ev.METHODS} == before
    (a / "predictor.safetensors").write_bytes(b"weightz")  # retrained in place, same size
    ev._digest_files.cache_clear()  # a later wm-eval run is a new process (within one, the
    # digest is cached by size and mtime, and this write may fall in the same mtime tick)
    after = {m: ev.fingerprint(cfg, "reach", m) for m in ev.METHODS}
    for method, uses_model in ev.METHODS.items():
        assert (after[method] != before[method]) == uses_model, method
    (a / "encoder" / "model.safetensors").write_bytes(b"ENC")  # a file in a subfolder counts
    ev._digest_files.cache_clear()
    assert ev.fingerprint(cfg, "reach", "wm_cem") != after["wm_cem"]
    assert ev.model_digest("toy") == "toy"  # not a folder: a stand-in named by tests


def test_model_methods_skipped_without_model_and_run_with_one(tmp_path, monkeypatch, capsys):
    cfg = _cfg(tmp_path, methods=("random", "wm_cem"), episodes=1, max_steps={"reach": 2})
    results = evaluate(cfg)
    assert "skipping wm_cem: it needs a world model" in capsys.readouterr().out
    assert {r.method for r in results} == {"random"}
    monkeypatch.setattr(ev, "load_model", lambda cfg: ToyDynamics())
    small_icem = ICEMConfig(samples=24, iterations=2, top_k=6, min_samples=12)
    cfg = replace(
        cfg, model="toy", methods=("wm_cem", "wm_icem", "reference_cem"), icem=small_icem,
        reference_cem=TINY_CEM, episodes_per_method={"reference_cem": 1},
    )  # fmt: skip
    results = evaluate(cfg)
    assert [r.method for r in results] == ["wm_cem", "wm_icem", "reference_cem"]
    assert all(r.steps == 2 and len(r.seconds_per_action) == 2 for r in results)


def test_eval_defaults_are_the_tuned_planners_and_bad_values_are_named():
    raw = {"tasks": ["reach"]}  # configs/eval.yaml holds no values: the defaults are EvalConfig's
    cfg = config_from_dict(raw)
    assert cfg.steps_for("pick_place") == 60 and len(cfg.episode_ids("reference_cem")) == 3
    assert cfg.reference_cem.samples == 800 and cfg.reference_cem.action_cost is None
    assert cfg.oracle_cem.samples == 32 and cfg.cem.action_cost[6] > 0  # the smaller oracle budget
    assert cfg.cem.action_cost == cfg.icem.action_cost == GRIPPER_EFFORT  # the demo's too
    assert len(cfg.episode_ids("wm_icem")) == 20 and cfg.subgoal_budgets["grasp"] == (8, 6, 6, 20)
    assert cfg.energy_views == ENERGY_VIEWS  # the demo's too
    execution = {k: getattr(cfg.mpc, k) for k in GRIPPER_EXECUTION}
    assert execution == GRIPPER_EXECUTION  # the demo's too
    with pytest.raises(ValueError, match="energy_views"):
        config_from_dict({**raw, "energy_views": {"reach": "exterior"}})  # not a list per goal
    with pytest.raises(ValueError, match="energy_views"):
        EvalConfig(energy_views={"reachh": ["exterior"]})
    with pytest.raises(ValueError, match="views"):
        EvalConfig(energy_views={"reach": ["exterior+exterior"]})
    with pytest.raises(ValueError, match="unknown keys"):
        config_from_dict({**raw, "episdes": 3})
    with pytest.raises(ValueError, match="methods"):
        config_from_dict({**raw, "methods": ["wm_mppi"]})
    with pytest.raises(ValueError, match=r"wm-eval.cem: unknown keys \['sample'\]"):
        config_from_dict({**raw, "cem": {"sample": 3}})
    with pytest.raises(ValueError, match="unknown method/task"):
        EvalConfig(max_steps={"reachh": 3})


def test_goal_schedule_and_random_agent():
    imgs = [np.full((8, 8, 3), i, np.uint8) for i in range(3)]
    info = {"goal_rgb": imgs[-1], "subgoal_rgbs": imgs, "task_id": 1}
    goals, budgets = goal_schedule(info, (2, 3, 4))
    assert len(goals) == 3 and budgets == [2, 3, 4]
    goals, budgets = goal_schedule(info, (5,))  # budgets that do not fit: final goal only
    assert len(goals) == 1 and goals[0] is imgs[-1] and budgets is None
    per_task = {"grasp": (1, 2, 3), "pick_place": (4, 5)}
    goals, budgets = goal_schedule({**info, "task": "grasp"}, per_task)
    assert len(goals) == 3 and budgets == [1, 2, 3]
    for task in ("pick_place", "reach"):  # misfit or no budgets for the task: final goal only
        goals, budgets = goal_schedule({**info, "task": task}, per_task)
        assert len(goals) == 1 and budgets is None
    with pytest.raises(ValueError, match="subgoal_budgets"):
        EvalConfig(subgoal_budgets={"pick_place": (8, 0)})

    class Box:
        low, high = -np.ones(7, np.float32), np.ones(7, np.float32)

    class Env:
        action_space = Box()

    agent = RandomAgent(seed=3)
    agent.reset(Env(), {}, info)
    acts = np.stack([agent.act({}, info)[0] for _ in range(50)])
    assert np.all(acts[:, 3:6] == 0) and np.all(np.abs(acts) <= 1) and acts[:, 0].std() > 0.3


def test_planner_agents_refuse_an_env_filmed_from_another_camera():
    """A model records its training camera; planning on another view is an error, not noise."""
    import dataclasses

    import gymnasium as gym

    import envs
    from envs.collection.recording import camera_metas
    from planning.harness.agents import PlannerAgent, ReferenceCEMAgent
    from planning.planners.cem import CEMPlanner
    from worldmodel.errors import CameraMismatchError
    from worldmodel.world_model import WorldModel

    env = gym.make(envs.TASKS["reach"], disable_env_checker=True)
    moved = gym.make(envs.TASKS["reach"], camera_pos=(1.3, 0.2, 0.6), disable_env_checker=True)
    record = dataclasses.asdict(camera_metas(env, ("exterior",), 64)[0])

    class Recorded(ToyDynamics):  # the WorldModel check on toy dynamics
        camera = record
        check_camera = WorldModel.check_camera

    for agent in (
        PlannerAgent(Recorded(), CEMPlanner(CEMConfig(samples=8, iterations=1, top_k=2))),
        ReferenceCEMAgent(Recorded()),
    ):
        obs, info = env.reset(seed=0)
        agent.reset(env, obs, info)  # the training view: fine
        obs, info = moved.reset(seed=0)
        with pytest.raises(CameraMismatchError, match="pos_m"):
            agent.reset(moved, obs, info)
    env.close()
    moved.close()
