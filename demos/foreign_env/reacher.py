"""Gymnasium's MuJoCo ``Reacher-v5`` seen from above in pixels, meeting the env contract
(docs/envs.md#bring-your-own-environment). ``import demos.foreign_env.reacher`` registers
``PixelReacher-v0``; ``wm-collect env=demos.foreign_env.reacher:PixelReacher-v0`` imports it.

Action: joint-angle deltas (rad), set kinematically (within +-3 rad, the elbow's range), then a
zero-torque physics step in which the arm rests, so ``action_kind`` is ``delta`` over the state,
the two joint angles. The goal image shows the arm at a random goal pose (0.4 to 1.2 rad at each
joint; the start is within 0.1 rad of 0) with the target dot at its fingertip; success: the
fingertip within 2 cm of the dot. Run the CLIs from the repository root with ``PYTHONPATH=.``
so that ``demos`` imports.
"""

import gymnasium as gym
import numpy as np


class PixelReacher(gym.Wrapper):
    def __init__(self, size: int = 64):
        top = {"distance": 0.55, "elevation": -90.0, "azimuth": 90.0, "lookat": np.zeros(3)}
        kw = {"width": size, "height": size, "frame_skip": 10, "default_camera_config": top}
        super().__init__(gym.make("Reacher-v5", render_mode="rgb_array", **kw).unwrapped)
        # the contract: render_fps 10 (10 x 0.01 s a step), one camera, joint-angle deltas
        self.metadata = {**self.env.metadata, "cameras": ("top",), "action_kind": "delta"}
        self.action_space = gym.spaces.Box(-0.25, 0.25, (2,), np.float32)
        rgb = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(rgb=rgb, state=gym.spaces.Box(-3, 3, (2,)))

    def _observe(self, arm, dot):  # put the arm (joint angles) and the target dot (xy): a step
        sim = self.unwrapped
        sim.set_state(np.r_[np.clip(arm, -3, 3), dot], np.zeros(4))  # the elbow's joint range
        sim.do_simulation(np.zeros(2), sim.frame_skip)
        gap = float(np.linalg.norm(sim.get_body_com("fingertip") - sim.get_body_com("target")))
        obs = {"rgb": self.env.render(), "state": sim.data.qpos[:2].astype(np.float32)}
        return obs, -gap, gap < 0.02, False, {"is_success": gap < 0.02, "task_distance": gap}

    def reset(self, *, seed=None, options=None):
        self.env.reset(seed=seed)
        start, goal = self.unwrapped.data.qpos[:2].copy(), self.np_random.uniform(0.4, 1.2, 2)
        self.unwrapped.set_state(np.r_[goal, 0.0, 0.0], np.zeros(4))
        dot = self.unwrapped.get_body_com("fingertip")[:2].copy()  # the fingertip at the goal
        goal_rgb = self._observe(goal, dot)[0]["rgb"]
        obs, *_, info = self._observe(start, dot)
        return obs, {**info, "goal_rgb": goal_rgb}

    def step(self, action):
        qpos = self.unwrapped.data.qpos
        return self._observe(qpos[:2] + np.clip(action, -0.25, 0.25), qpos[2:].copy())


gym.register("PixelReacher-v0", entry_point=PixelReacher, max_episode_steps=20)
