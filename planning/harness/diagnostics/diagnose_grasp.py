"""Does a world model see and predict a grasp? Three checks behind the grasp analysis in docs/experiments/.

For pick-and-place instances (``--episodes``), the arm is put at the "at the object, gripper
open" sub-goal (sub-goal 1 of the default schedule; sub-goal 2 is "closed on the object"):

1. image: the encoder's energy from "open" and from "closed" (after a real close step) to the
   "grasped" sub-goal image, beside the energy of a 5 cm arm move (what the planner trades off);
2. predictor, one step: predicted energy to the "grasped" image after ``close`` vs ``wait``
   (a model that predicts the gripper gives ``close`` the lower energy);
3. predictor, three steps: is the rollout of [close, up, up] nearer the real "lifted with the
   object" frame, and [wait, up, up] nearer the real "lifted without it" frame? (chance: half).

With ``--data`` (the model's training episodes) it also measures, at the grasp of up to 60
episodes (the first step that closes the gripper with the arm still), the model's one-step error
with the recorded action and with its gripper part zeroed (a model that ignores the gripper gets
the same error from both); ``--data-start K`` checks episodes from K on (e.g. appended practice
episodes).

    python planning/harness/diagnostics/diagnose_grasp.py --model models/shipped --data runs/shipped/data
    (a model trained on another view: --camera-pos X Y Z --camera-lookat X Y Z --camera-fovy F;
    a model of several views is given their mosaic, WorldModel.views)
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

import envs
from planning.harness.agents import check_camera, model_views
from worldmodel.models.views import read_view_frames
from worldmodel.world_model import WorldModel

CLOSE = np.array([0, 0, 0, 0, 0, 0, 1], np.float32)
WAIT = np.zeros(7, np.float32)
UP = np.array([0, 0, 0.05, 0, 0, 0, 0], np.float32)
SIDE = np.array([0.05, 0, 0, 0, 0, 0, 0], np.float32)


def _l1(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().mean())


def scene_checks(wm: WorldModel, episodes: int, **env_kwargs) -> None:
    env = gym.make(envs.TASKS["pick_place"], views=model_views(wm), **env_kwargs).unwrapped
    check_camera(wm, env)

    def enc() -> tuple[torch.Tensor, np.ndarray]:
        state = env.ee_state()
        img = torch.as_tensor(env.render_views()[None])
        return wm.encode(img, torch.as_tensor(state[None], dtype=torch.float32)), state

    rows = []
    for k in range(episodes):
        _, info = env.reset(seed=k)
        at_open, grasped = env.goal_sim_states[1], info["subgoal_rgbs"][2]
        z_goal = wm.encode(
            torch.as_tensor(grasped[None]),
            torch.as_tensor(info["subgoal_states"][2][None], dtype=torch.float32),
        )
        outcome = {}
        for name, first in (("close", CLOSE), ("wait", WAIT), ("side", SIDE)):
            env.set_sim_state(at_open)
            env.step(first)
            outcome[name] = enc()[0]
            if name != "side":
                env.step(UP)
                env.step(UP)
                outcome[name + "_up"] = enc()[0]
        env.set_sim_state(at_open)
        z0, s0 = enc()
        seqs = torch.as_tensor(np.stack([[CLOSE, UP, UP], [WAIT, UP, UP]]))[None]
        with torch.inference_mode():
            pred = wm.rollout(z0, torch.as_tensor(s0[None], dtype=torch.float32), seqs)[0]
        held, empty = outcome["close_up"], outcome["wait_up"]
        right = (_l1(pred[0, -1], held) < _l1(pred[0, -1], empty)) + (
            _l1(pred[1, -1], empty) < _l1(pred[1, -1], held)
        )
        rows.append(
            (
                _l1(z0, z_goal),  # open -> grasped image
                _l1(outcome["close"], z_goal),  # after a real close
                _l1(outcome["side"], z0),  # a 5 cm arm move
                _l1(held, empty),  # lifted with vs without the object
                _l1(pred[0, 0], z_goal),  # predicted, close
                _l1(pred[1, 0], z_goal),  # predicted, wait
                right,
            )
        )
        r = rows[-1]
        print(
            f"instance {k} ({env.object_name}): image open {r[0]:.4f} closed {r[1]:.4f} "
            f"arm 5 cm {r[2]:.4f} lifted-with-vs-without {r[3]:.4f} | predicted close "
            f"{r[4]:.4f} wait {r[5]:.4f} | 3-step right {r[6]}/2"
        )
    m = np.array(rows, dtype=np.float64)
    print(
        f"mean over {len(rows)}: image energy to 'grasped' open {m[:, 0].mean():.4f} / closed "
        f"{m[:, 1].mean():.4f}, 5 cm arm move {m[:, 2].mean():.4f}, lifted with vs without the "
        f"object {m[:, 3].mean():.4f}; predicted close {m[:, 4].mean():.4f} vs wait "
        f"{m[:, 5].mean():.4f} (close lower in {(m[:, 4] < m[:, 5]).sum()}/{len(rows)}); 3-step "
        f"rollouts nearer the right outcome {int(m[:, 6].sum())}/{2 * len(rows)}"
    )
    env.close()


def _arm_still(actions: np.ndarray) -> np.ndarray:
    """(T,) bool: the action moves the arm less than 5 mm on every axis."""
    return np.abs(actions[:, :3]).max(axis=1) < 5e-3


def gripper_counts(data: str) -> None:
    """How many recorded transitions open or close the gripper (|dgripper| >= 0.5, what
    wm-train's gripper_event_weight weights), and how many of those keep the arm still."""
    from worldmodel.data.episodes import open_dataset

    ds = open_dataset(data)
    total = events = still = 0
    for i in range(len(ds)):
        a = ds.steps(i).action[:-1]  # the last row is no action
        big = np.abs(a[:, 6]) >= 0.5
        total, events, still = (
            total + len(a),
            events + big.sum(),
            still + (big & _arm_still(a)).sum(),
        )
    print(
        f"training data: {events} of {total} transitions open or close the gripper "
        f"({100 * events / max(total, 1):.1f} %), {still} of them with the arm still "
        f"({100 * still / max(total, 1):.1f} % of all)"
    )


def data_check(wm: WorldModel, data: str, limit: int = 60, start: int = 0) -> None:
    """At the first step of each training episode that closes the gripper with the arm still
    (the expert's grasp), the model's one-step error with the recorded action and with its
    gripper part zeroed: a model that learned the gripper has the lower error with the former.
    Episodes from ``start`` on (e.g. where appended practice episodes begin)."""
    from worldmodel.data.episodes import open_dataset

    ds = open_dataset(data)
    rows = []
    for i in range(start, len(ds)):
        tab = ds.steps(i)
        a = tab.action
        still = np.flatnonzero((a[:-1, 6] > 0.5) & _arm_still(a[:-1]))
        if not len(still):
            continue
        t = still[0]
        frames = read_view_frames(ds, i, model_views(wm), np.arange(t, t + 2))
        states = torch.as_tensor(tab.state[t : t + 2], dtype=torch.float32)
        with torch.inference_mode():
            z = wm.encode(torch.as_tensor(frames), states)
            acts = torch.as_tensor(a[t : t + 1], dtype=torch.float32)
            zeroed = acts.clone()
            zeroed[:, 6] = 0.0
            pred = wm.rollout(z[:1], states[:1], torch.stack([acts, zeroed])[None])[0, :, 0]
        rows.append(
            (_l1(z[1], z[0]), _l1(pred[0], z[1]), _l1(pred[1], z[1]), _l1(pred[0], pred[1]))
        )
        if len(rows) >= limit:
            break
    if not rows:
        print("training data: no step closes the gripper with the arm still")
        return
    m = np.array(rows).mean(0)
    print(
        f"training data, {len(rows)} grasps (close, arm still): real change {m[0]:.4f}; one-step "
        f"error with the recorded action {m[1]:.4f}, with its gripper part zeroed {m[2]:.4f} "
        f"(the two predictions differ by {m[3]:.4f})"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/shipped")
    ap.add_argument("--episodes", type=int, default=10, help="pick-and-place instances 0..N-1")
    ap.add_argument("--data", default=None, help="the model's training episodes (optional)")
    ap.add_argument("--data-start", type=int, default=0, help="first episode of --data checked")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--camera-pos", type=float, nargs=3, help="exterior camera (m); default: env's")
    ap.add_argument("--camera-lookat", type=float, nargs=3)
    ap.add_argument("--camera-fovy", type=float)
    args = ap.parse_args(argv)
    view = {"camera_pos": args.camera_pos, "camera_lookat": args.camera_lookat,
            "camera_fovy_deg": args.camera_fovy}  # fmt: skip
    if args.episodes < 1:
        ap.error("--episodes must be >= 1")
    torch.set_num_threads(args.threads)
    wm = WorldModel.load(args.model)
    scene_checks(wm, args.episodes, **{k: tuple(v) if isinstance(v, list) else v
                                       for k, v in view.items() if v is not None})  # fmt: skip
    if args.data:
        gripper_counts(args.data)
        data_check(wm, args.data, start=args.data_start)


if __name__ == "__main__":
    main()
