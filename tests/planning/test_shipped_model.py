"""The model committed under models/shipped: loads strictly, fits the size budget, plans."""

from pathlib import Path

import gymnasium as gym
import pytest
import torch

import envs
from planning.harness.agents import PlannerAgent, run_episode
from planning.harness.diagnostics import diagnose_grasp
from planning.planners.cem import CEMConfig, CEMPlanner
from worldmodel.world_model import WorldModel

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "shipped"


def test_shipped_policy_is_an_ensemble_of_three_beside_its_proposal():
    """models/shipped/policy/ loads as the three-member ensemble wm_policy acts with, for the
    shipped encoder; wm_pcem's proposal is the single policy in policy/proposal/."""
    from planning.policy import load_policy, proposal_folder
    from worldmodel.models.policy import GoalPolicy, PolicyEnsemble

    model = WorldModel.load(SHIPPED)
    policy = load_policy(model, SHIPPED / "policy")
    assert isinstance(policy, PolicyEnsemble) and len(policy.members) == 3
    assert proposal_folder(SHIPPED / "policy") == SHIPPED / "policy" / "proposal"
    assert isinstance(load_policy(model, proposal_folder(SHIPPED / "policy")), GoalPolicy)


def test_shipped_model_loads_and_fits_the_size_budget():
    # 40 MiB: encoder 11, predictor 3.3, eval log 1.1, the policy's three members and the
    # proposal 4 x 5.1 (fp32), with room for the log to grow
    size = sum(f.stat().st_size for f in SHIPPED.rglob("*") if f.is_file())
    assert 0 < size <= 40 * 2**20, f"models/shipped is {size / 2**20:.1f} MiB"
    model = WorldModel.load(SHIPPED)
    images = torch.zeros(2, 64, 64 * len(model.views), 3, dtype=torch.uint8)  # views side by side
    z = model.encode(images, torch.zeros(2, 7))
    assert z.shape == (2, model.predictor.cfg.tokens_per_frame, model.predictor.cfg.encoder_dim)
    pred = model.rollout(z, torch.zeros(2, 7), torch.zeros(2, 3, 1, 7))
    assert pred.shape == (2, 3, 1, *z.shape[1:]) and torch.isfinite(pred).all()


def test_shipped_model_plans_a_reach_to_its_goal_image():
    """Goal-image reach from pixels alone at the eval budget (random actions: 2/50 in wm-eval).
    Instances 1 and 2 succeed in the README's table run."""
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    model = WorldModel.load(SHIPPED)
    agent = PlannerAgent(model, CEMPlanner(CEMConfig(samples=256, iterations=6, top_k=16)))
    env = gym.make(envs.TASKS["reach"], views=model.views)
    wins = 0
    for task_id in (1, 2):
        res = run_episode(env, agent, "wm_cem", task_id, task_id, 30, None)
        wins += res.success
    env.close()
    assert wins == 2


def test_shipped_model_was_trained_on_the_default_camera():
    """Changing the env's default view without retraining would silently break every planner."""
    from planning.harness.agents import check_camera

    model = WorldModel.load(SHIPPED)
    assert model.camera is not None, "models/shipped records no training camera"
    env = gym.make(envs.TASKS["pick_place"], views=model.views)
    check_camera(model, env)
    env.close()


def test_shipped_model_sees_and_predicts_the_grasp(capsys):
    """planning/harness/diagnostics/diagnose_grasp.py: a real close brings the frame nearer the 'grasped' image, and
    the predictor puts a close action nearer it than waiting (the single-view model shipped
    before could not: close lower in 1 of 10, a coin flip on these two instances)."""
    import re

    mod = diagnose_grasp
    mod.main(["--model", str(SHIPPED), "--episodes", "2", "--threads", "2"])
    out = capsys.readouterr().out
    m = re.search(r"'grasped' open ([\d.]+) / closed ([\d.]+)", out)
    assert m and float(m.group(2)) < float(m.group(1))
    m = re.search(r"predicted close ([\d.]+) vs wait ([\d.]+) \(close lower in (\d+)/2\)", out)
    assert m, out
    assert int(m.group(3)) == 2 and float(m.group(2)) - float(m.group(1)) > 0.01
    assert "3-step rollouts nearer the right outcome" in out


def test_grasp_diagnosis_data_check_finds_the_expert_grasp(tmp_path, capsys):
    """--data: the expert's close-with-the-arm-still step is found and measured."""
    import re

    from envs.collection.collect import CollectConfig, collect

    model = WorldModel.load(SHIPPED)
    cfg = CollectConfig(
        env="pick_place", episodes=1, image_size=64, max_steps=30, out_dir=str(tmp_path),
        expert_frac=1.0, noisy_frac=0.0, explore_frac=0.0, progress=False,
        wrist_camera="wrist" in model.views,
    )  # fmt: skip
    collect(cfg)
    mod = diagnose_grasp
    mod.gripper_counts(str(tmp_path))
    mod.data_check(model, str(tmp_path))
    out = capsys.readouterr().out
    counts = re.search(
        r"(\d+) of (\d+) transitions open or close .*, (\d+) of them with the arm", out
    )
    assert counts, out
    events, total, still = (int(g) for g in counts.groups())
    assert total == 30 and 1 <= still <= events < total  # the expert closes once, arm still
    m = re.search(r"1 grasps \(close, arm still\): real change ([\d.]+); one-step error", out)
    assert m, out
    assert float(m.group(1)) > 0


def test_demo_planner_choice_builds_the_eval_budgets():
    from planning.harness.agents import GRIPPER_EXECUTION
    from planning.harness.demo import make_demo_agent
    from planning.harness.evaluate import EvalConfig
    from planning.planners import GRIPPER_EFFORT
    from planning.planners.icem import ICEMPlanner

    evalcfg = EvalConfig()
    for name, cls in (("cem", CEMPlanner), ("icem", ICEMPlanner)):
        planner_cfg = getattr(evalcfg, name)
        budget = (planner_cfg.samples, planner_cfg.iterations)  # wm_cem / wm_icem's
        agent = make_demo_agent(SHIPPED, None, None, name)
        planner = agent.mpc.planner
        assert type(planner) is cls
        assert (planner.cfg.samples, planner.cfg.iterations) == budget
        assert planner.cfg.action_cost == GRIPPER_EFFORT
        assert {k: getattr(agent.mpc.cfg, k) for k in GRIPPER_EXECUTION} == GRIPPER_EXECUTION
    with pytest.raises(ValueError, match="planner must be one of"):
        make_demo_agent(SHIPPED, None, None, "mppi")
    # the default: wm_pcem's budget, started at the shipped proposal policy's action
    agent = make_demo_agent(SHIPPED, None, None)
    pcem = evalcfg.pcem
    assert type(agent.mpc.planner) is CEMPlanner and agent.mpc.proposal is not None
    assert (agent.mpc.planner.cfg.samples, agent.mpc.planner.cfg.iterations,
            agent.mpc.planner.cfg.top_k) == (pcem.samples, pcem.iterations, pcem.top_k)  # fmt: skip
