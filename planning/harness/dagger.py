"""wm-dagger: run a goal policy in simulation and record what the scripted expert would have
done in every state it visits (DAgger, Ross et al. 2011; #25).

Behaviour cloning sees only the states the demonstrations pass through; the policy's own small
errors take it elsewhere (an arm a centimetre off the object, a gripper closed on nothing), and
there it has never been shown what to do. Each rollout here resets a free instance of the task
(``seed + k``, seeds the evaluation does not use), gives the policy the final goal image alone,
and at every step records the frame's latent, the state and the expert's action (which reads
the simulator's privileged state: only for labels, never at planning time). The policy's action
is executed (the expert's with probability ``beta``). ``wm-train-policy corrections=[...]``
then trains on demonstrations and corrections together; repeating the two is DAgger.

    wm-dagger model=models/shipped policy=runs/policy out_dir=runs/dagger/r1 episodes=300

Each rollout is written as it ends (:mod:`worldmodel.training.corrections`), so a rerun
continues; the success rate it prints is the policy's on these free training instances.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from planning.harness.agents import GRIPPER_EXECUTION, PolicyAgent, model_views
from planning.mpc import MPCConfig
from worldmodel.config import from_mapping, plain_defaults, run_cli
from worldmodel.models.policy import POLICY_DIR, POLICY_WEIGHTS, ensemble_members
from worldmodel.training.corrections import episode_path, open_corrections, write_episode

__all__ = ["DaggerConfig", "collect_corrections", "main"]


@dataclass(frozen=True)
class DaggerConfig:
    """Options of wm-dagger (see the module docstring)."""

    model: str = ""  # world model folder
    policy: str = ""  # the policy to roll out; "" = <model>/policy
    out_dir: str = "runs/dagger"
    task: str = "pick_place"
    episodes: int = 300
    seed: int = 100_000  # rollout k resets with seed + k (wm-eval: 0.., its dev runs 10000..)
    beta: float = 0.0  # probability of executing the expert's action instead of the policy's
    image_size: int = 64
    max_steps: int = 0  # 0: the task's time limit
    workers: int = 2
    mpc: MPCConfig = field(default_factory=lambda: MPCConfig(**GRIPPER_EXECUTION))

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("wm-dagger needs model=<world model folder>")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"DaggerConfig.beta must lie in [0, 1], got {self.beta}")
        if self.episodes < 1 or self.workers < 1 or self.max_steps < 0:
            raise ValueError(
                f"DaggerConfig: episodes and workers must be >= 1, max_steps >= 0, got "
                f"{self.episodes}, {self.workers}, {self.max_steps}"
            )

    @property
    def policy_folder(self) -> Path:
        return Path(self.policy) if self.policy else Path(self.model) / POLICY_DIR


_WORKER: dict = {}


def _setup(cfg: DaggerConfig):
    """(env, agent, expert) of this process, built once."""
    if "agent" not in _WORKER:
        from envs.contract import episode_steps, make_env
        from envs.experts import make_expert
        from planning.policy import load_policy
        from worldmodel.world_model import WorldModel

        torch.set_num_threads(1)
        model = WorldModel.load(cfg.model)
        steps = cfg.max_steps or episode_steps(cfg.task)
        env = make_env(cfg.task, image_size=cfg.image_size, views=model_views(model),
                       max_episode_steps=steps)  # fmt: skip
        agent = PolicyAgent(model, load_policy(model, cfg.policy_folder), cfg.mpc)
        _WORKER.update(env=env, agent=agent, expert=make_expert(env, "expert"), steps=steps)
    return _WORKER["env"], _WORKER["agent"], _WORKER["expert"], _WORKER["steps"]


def rollout(cfg: DaggerConfig, k: int) -> tuple[int, bool, int]:
    """Roll out and write rollout ``k``; returns (k, success, steps)."""
    env, agent, expert, max_steps = _setup(cfg)
    rng = np.random.default_rng([cfg.seed, k])
    obs, info = env.reset(seed=cfg.seed + k)
    agent.reset(env, obs, info)
    expert.reset()
    zs, states, labels = [], [], []
    success = bool(info["is_success"])
    while not success and len(labels) < max_steps:
        action, _, _ = agent.act(obs, info)
        label = expert.act(obs, info)
        zs.append(agent.controller.last_latent[0])
        states.append(np.asarray(obs["state"], np.float32))
        labels.append(label)
        if rng.random() < cfg.beta:
            action = label
        obs, _, terminated, truncated, info = env.step(action)
        success = bool(info["is_success"])
        if terminated or truncated:
            break
    if labels:
        write_episode(
            cfg.out_dir, k, z=torch.stack(zs).half().numpy(),
            goal=agent.controller.goal_latent[0].half().numpy(), state=np.stack(states),
            label=np.stack(labels).astype(np.float32), success=np.bool_(success),
            seed=np.int64(cfg.seed + k),
        )  # fmt: skip
    return k, success, len(labels)


def _meta(cfg: DaggerConfig) -> dict:
    from worldmodel.world_model import WorldModel

    model = WorldModel.load(cfg.model)
    folder = cfg.policy_folder
    members = ensemble_members(folder)  # an ensemble: the weights of the members it lists
    weights = (
        [folder / POLICY_WEIGHTS] if members is None else [m / POLICY_WEIGHTS for m in members]
    )
    missing = [w for w in weights if not w.is_file()]
    if missing:
        raise FileNotFoundError(f"wm-dagger: no policy at {missing[0]} (policy=<folder>)")
    digest = hashlib.sha256()
    for w in weights:
        digest.update(w.read_bytes())
    return {
        "encoder": model.encoder.identity(), "task": cfg.task, "beta": cfg.beta,
        "seed": cfg.seed, "image_size": cfg.image_size, "max_steps": cfg.max_steps,
        "policy_sha256": digest.hexdigest(),
    }  # fmt: skip


def collect_corrections(cfg: DaggerConfig) -> dict:
    """Roll out the missing ``0 .. episodes-1``; returns this run's counts (a rollout whose
    instance starts solved has no step to label and writes no file)."""
    open_corrections(cfg.out_dir, _meta(cfg))
    _WORKER.clear()  # built for this cfg when run in this process
    todo = [k for k in range(cfg.episodes) if not episode_path(cfg.out_dir, k).exists()]
    results = []
    bar = tqdm(total=cfg.episodes, initial=cfg.episodes - len(todo), desc="wm-dagger", unit="ep")
    if cfg.workers == 1 or len(todo) <= 1:
        for k in todo:
            results.append(rollout(cfg, k))
            bar.update()
    else:
        with ProcessPoolExecutor(cfg.workers, mp_context=get_context("spawn")) as pool:
            for fut in as_completed([pool.submit(rollout, cfg, k) for k in todo]):
                results.append(fut.result())
                bar.update()
    bar.close()
    wins = sum(r[1] for r in results)
    return {"rolled_out": len(results), "succeeded": wins,
            "labelled_steps": sum(r[2] for r in results), "out_dir": cfg.out_dir}  # fmt: skip


def config_from_mapping(raw: dict) -> DaggerConfig:
    return from_mapping(DaggerConfig, raw, where="wm-dagger")


def main() -> None:
    """Hydra entry point (``configs/dagger.yaml`` over the DaggerConfig defaults)."""
    run_cli("dagger", config_from_mapping, _run, plain_defaults(DaggerConfig))


def _run(cfg: DaggerConfig) -> None:
    print(f"wm-dagger: {collect_corrections(cfg)}")


if __name__ == "__main__":
    main()
