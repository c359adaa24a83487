"""End to end: openpi's client drives SimRobot(wm/Reach-v0) through wm-serve to the goal.

Until a trained world model ships, the served dynamics is the analytic toy model over the
proprioceptive state (a state oracle): the goal is sent as the env's goal image plus its goal
state. The test fails if the server, the wire format, the planner or SimRobot break.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from planning.planners.cem import CEMConfig
from planning.robots import SimRobot
from planning.server.config import ServeConfig
from planning.server.serve import ServerThread

envs = pytest.importorskip("envs")
policy_mod = pytest.importorskip("openpi_client.websocket_client_policy")


@pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")
@pytest.mark.parametrize("task_id", [0, 1])
def test_openpi_client_drives_simrobot_to_reach_goal(task_id):
    cfg = ServeConfig(port=0, planner="cem", cem=CEMConfig(samples=128, iterations=5, top_k=12))
    env = gym.make(envs.TASKS["reach"], image_size=64)
    with ServerThread(cfg) as srv, SimRobot(env, task_id=task_id) as robot:
        client = policy_mod.WebsocketClientPolicy("127.0.0.1", srv.port)
        goal = {"goal_image": robot.info["goal_rgb"], "goal_state": robot.info["goal_state"]}
        assert client.infer({**goal, "reset": True})["ok"]
        start_dist = robot.info["task_distance"]
        for _step in range(15):
            ob = robot.get_observation()
            reply = client.infer({"observation/image": ob.rgb, "observation/state": ob.state})
            sent = robot.send_action(reply["actions"][0])
            assert np.all(np.abs(sent[:3]) <= 0.05 + 1e-6)
            if robot.info["is_success"]:
                break
        assert robot.info["is_success"], (start_dist, robot.info["task_distance"])
        assert robot.info["task_distance"] < start_dist
    env.close()


@pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")
def test_openpi_client_with_droid_keys_drives_the_sim_arm_under_server_side_safety():
    """#24 done-when: DROID-style keys (separate camera images, cartesian_position +
    gripper_position, joint_position and prompt ignored, a timestamp), the server's own 3 cm
    step cap, and the MuJoCo arm reaching its goal."""
    import time

    from planning.server.checks import ServeSafety

    cfg = ServeConfig(port=0, planner="cem", cem=CEMConfig(samples=128, iterations=5, top_k=12),
                      obs_keys="droid", safety=ServeSafety(max_translation_m=0.03))  # fmt: skip
    env = gym.make(envs.TASKS["reach"], image_size=64, wrist_camera=True)
    with ServerThread(cfg) as srv, SimRobot(env, task_id=0) as robot:
        client = policy_mod.WebsocketClientPolicy("127.0.0.1", srv.port)
        goal = {"goal_image": robot.info["goal_rgb"], "goal_state": robot.info["goal_state"]}
        assert client.infer({**goal, "reset": True})["ok"]
        clamped = 0
        for _step in range(25):
            ob = robot.get_observation()
            wrist = robot._obs.get("wrist_rgb", ob.rgb)
            reply = client.infer({
                "observation/exterior_image_1_left": ob.rgb,
                "observation/wrist_image_left": wrist,
                "observation/cartesian_position": ob.state[:6].astype(np.float64),
                "observation/gripper_position": ob.state[6:].astype(np.float64),
                "observation/joint_position": np.zeros(7),
                "observation/timestamp": time.time(),
                "prompt": "reach the goal",
            })  # fmt: skip
            action = reply["actions"][0]
            assert np.linalg.norm(action[:3]) <= 0.03 + 1e-6  # the server's limit, not ours
            clamped += "translation" in reply["clamped"][0]
            robot.send_action(action)
            if robot.info["is_success"]:
                break
        assert robot.info["is_success"], robot.info["task_distance"]
        assert clamped > 0  # the cap bit at least once on the way
    env.close()
