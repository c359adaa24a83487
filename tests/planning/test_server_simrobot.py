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
from planning.server.serve import ServeConfig, ServerThread

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
