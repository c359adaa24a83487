"""envs.ik: the site Jacobian against finite differences, IK convergence, tracking in the env."""

import gymnasium as gym
import mujoco
import numpy as np
import pytest

import envs  # noqa: F401  (registers the ids)
from envs.ik import DlsIK, IKConfig, site_jacobian
from envs.rotations import apply_delta, matrix_from_euler_xyz, rotation_angle, rotvec_from_matrix
from envs.scene import ARM_JOINTS, SceneConfig, build_scene_xml


@pytest.fixture(scope="module")
def model():
    return mujoco.MjModel.from_xml_string(build_scene_xml(SceneConfig()))


def _random_q(ik: DlsIK, rng) -> np.ndarray:
    mid, half = (ik.lower + ik.upper) / 2, (ik.upper - ik.lower) / 2
    return mid + rng.uniform(-0.6, 0.6, len(mid)) * half


def test_site_jacobian_matches_finite_differences(model):
    ik = DlsIK(model, "ee", ARM_JOINTS, np.zeros(7))
    rng = np.random.default_rng(0)
    eps = 1e-6
    for _ in range(5):
        q = _random_q(ik, rng)
        ik.forward(q)
        J = site_jacobian(model, ik.data, ik.site_id)[:, ik.dadr]
        for k in range(7):
            dq = np.zeros(7)
            dq[k] = eps
            p_plus, R_plus = ik.forward(q + dq)
            p_minus, R_minus = ik.forward(q - dq)
            np.testing.assert_allclose((p_plus - p_minus) / (2 * eps), J[:3, k], atol=1e-6)
            omega = rotvec_from_matrix(R_plus @ R_minus.T) / (2 * eps)
            np.testing.assert_allclose(omega, J[3:, k], atol=1e-6)


def test_ik_reaches_reachable_poses(model):
    ik = DlsIK(model, "ee", ARM_JOINTS, np.array([0.0, -0.3, 0.0, -2.4, 0.0, 2.1, 0.785]))
    rng = np.random.default_rng(1)
    for _ in range(10):
        q_true = ik.rest_qpos + rng.uniform(-0.4, 0.4, 7)
        pos, rot = ik.forward(q_true)
        res = ik.solve(ik.rest_qpos, pos, rot)
        assert res.pos_err_m < IKConfig().pos_tol_m and res.rot_err_rad < IKConfig().rot_tol_rad
        p, R = ik.forward(res.qpos)
        assert np.linalg.norm(p - pos) < 1e-3 and rotation_angle(R, rot) < 5e-3
        assert np.all(res.qpos >= ik.lower) and np.all(res.qpos <= ik.upper)


def test_ik_config_validates():
    with pytest.raises(ValueError):
        IKConfig(damping=0.0)


def test_env_tracks_commanded_moves():
    """After each 0.25 s step the EE is within 5 mm / 0.02 rad of state (+) applied action."""
    env = gym.make("wm/Reach-v0", disable_env_checker=True)
    rng = np.random.default_rng(2)
    obs, _ = env.reset(seed=3)
    scale = np.array([1, 1, 1, 0.5, 0.5, 0.5, 1.0])
    for _ in range(12):
        state = obs["state"].astype(np.float64)
        obs, *_, info = env.step(rng.uniform(env.action_space.low, env.action_space.high) * scale)
        target = apply_delta(state, info["applied_action"].astype(np.float64))
        reached = obs["state"].astype(np.float64)
        assert np.linalg.norm(target[:3] - reached[:3]) < 5e-3
        assert (
            rotation_angle(matrix_from_euler_xyz(target[3:6]), matrix_from_euler_xyz(reached[3:6]))
            < 0.02
        )
    env.close()
