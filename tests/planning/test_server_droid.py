"""wm-serve with a robot in the loop (#24): openpi's client sends DROID-style observations
(separate exterior and wrist images, cartesian and gripper position, joint position, prompt,
timestamp); the server assembles the model's view mosaic, plans, applies its safety limits to
every returned action and reports the clamps; stale observations are refused; dry runs return
no actions; the model's conventions (state dim, names, bounds, views) drive it all."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from planning.mpc import MPCConfig
from planning.planners.cem import CEMConfig
from planning.robots import FakeRobot
from planning.server.checks import ServeSafety
from planning.server.config import ServeConfig, build_planner
from planning.server.keys import CONTROL_KEYS, ObsKeyMap, resolve_obs_keys
from planning.server.serve import PolicyServer, ServerThread
from planning.server.wire import RequestError, packb, parse_request, unpackb
from planning.toy import ToyDynamics

policy_mod = pytest.importorskip("openpi_client.websocket_client_policy")
pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")

START = np.array([0.45, 0.0, 0.30, 0.0, 0.0, 0.0, 0.0], np.float32)
GOAL = START + np.array([0.06, -0.04, 0.03, 0, 0, 0, 0.5], np.float32)
CEM = CEMConfig(samples=128, iterations=5, top_k=12)
EXTERIOR_FILL, WRIST_FILL = 40, 200  # pixel values that tell the views apart in the mosaic


class TwoViewToy(ToyDynamics):
    """The toy dynamics (it encodes the state, not the pixels) declaring two views, and
    recording the frames it is given."""

    views = ("exterior", "wrist")

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[np.ndarray] = []

    def encode(self, images, states):
        self.frames.append(np.asarray(torch.as_tensor(images).cpu()))
        return super().encode(images, states)


def droid_obs(state, stamp=None, **extra):
    """A request as openpi's DROID example client builds it, plus the end-effector pose and a
    timestamp; the exterior camera is not square (the server fits it)."""
    return {
        "observation/exterior_image_1_left": np.full((48, 64, 3), EXTERIOR_FILL, np.uint8),
        "observation/wrist_image_left": np.full((32, 32, 3), WRIST_FILL, np.uint8),
        "observation/cartesian_position": state[:6].astype(np.float64),
        "observation/gripper_position": state[6:].astype(np.float64),
        "observation/joint_position": np.linspace(-1, 1, 7),
        "observation/timestamp": time.time() if stamp is None else stamp,
        "prompt": "reach the goal",
        **extra,
    }


def droid_goal(state):
    image = np.zeros((32, 32, 3), np.uint8)
    return {"goal_image": {"exterior": image, "wrist": image}, "goal_state": state}


def serve(dynamics=None, **overrides):
    cfg = ServeConfig(**{"port": 0, "planner": "cem", "cem": CEM, "obs_keys": "droid", **overrides})
    dynamics = dynamics or TwoViewToy()
    return ServerThread(cfg, lambda c: (dynamics, build_planner(c, dynamics)))


def client(srv):
    return policy_mod.WebsocketClientPolicy("127.0.0.1", srv.port)


def error_of(policy, request) -> str:
    with pytest.raises(RuntimeError) as err:
        policy.infer(request)
    return str(err.value)


def test_openpi_droid_client_drives_a_sim_arm_to_the_goal_within_tight_safety_limits():
    toy, tight = TwoViewToy(), ServeSafety(max_translation_m=0.01)
    with serve(toy, safety=tight) as srv, FakeRobot(START) as robot:
        policy = client(srv)
        assert policy.infer({**droid_goal(GOAL), "reset": True})["ok"]
        clamps, dist = [], np.inf
        for _step in range(25):
            ob = robot.get_observation()
            reply = policy.infer(droid_obs(ob.state))
            action = reply["actions"][0]
            assert np.linalg.norm(action[:3]) <= 0.01 + 1e-6  # every action inside the limits
            assert np.linalg.norm(action[3:6]) <= tight.max_rotation_rad + 1e-6
            target = ob.state[:3] + action[:3]
            assert (target >= np.array(tight.workspace_low_m) - 1e-6).all()
            assert (target <= np.array(tight.workspace_high_m) + 1e-6).all()
            assert 0.0 <= ob.state[6] + action[6] <= 1.0 + 1e-6
            clamps += reply["clamped"][0]
            if "translation" in reply["clamped"][0]:  # the plan asked for more than 1 cm
                assert np.linalg.norm(reply["requested_actions"][0, :3]) > 0.01
            robot.send_action(action)
            dist = float(np.linalg.norm(robot.state[:3] - GOAL[:3]))
            if dist < 0.006:
                break
        assert dist < 0.006, dist
        assert "translation" in clamps
        assert 0 <= reply["obs_age_s"] < 1.0
    # The server built the mosaic: exterior (cropped to 48 px, resized to 32) then wrist.
    frame = toy.frames[-1][0]
    assert frame.shape == (32, 64, 3)
    assert (frame[:, :32] == EXTERIOR_FILL).all() and (frame[:, 32:] == WRIST_FILL).all()


def test_the_workspace_box_holds_over_the_whole_returned_chunk():
    """Chunk of 3 from x = 0.47 towards x = 0.56 with the box ending at x = 0.5: the rows,
    integrated from the request's state, stop at the wall and the clamps are reported."""
    start = START.copy()
    start[0] = 0.47
    goal = start + np.array([0.09, 0, 0, 0, 0, 0, 0], np.float32)
    wall = ServeSafety(workspace_high_m=(0.5, 0.4, 0.6))
    cem = CEMConfig(samples=128, iterations=5, top_k=12, horizon=3)
    with serve(safety=wall, mpc=MPCConfig(action_chunk=3), cem=cem) as srv:
        policy = client(srv)
        policy.infer(droid_goal(goal))
        reply = policy.infer(droid_obs(start))
    x = start[0] + np.cumsum(reply["actions"][:, 0])
    assert reply["actions"].shape == (3, 7) and (x <= 0.5 + 1e-6).all(), x
    assert x[-1] == pytest.approx(0.5, abs=1e-4)
    assert any("workspace" in row for row in reply["clamped"])
    assert reply["requested_actions"][:, 0].sum() > 0.05  # the plan went through the wall


def test_missing_camera_stale_and_future_timestamps_are_refused_and_the_client_keeps_going():
    with serve() as srv:
        policy = client(srv)
        policy.infer(droid_goal(GOAL))
        no_wrist = droid_obs(START)
        del no_wrist["observation/wrist_image_left"]
        assert "camera 'wrist' missing: send 'observation/wrist_image_left'" in error_of(
            policy, no_wrist
        )
        stale = error_of(policy, droid_obs(START, stamp=time.time() - 5.0))
        assert "stale observation: age 5.0" in stale and "max_obs_age_s=1.0" in stale
        ahead = error_of(policy, droid_obs(START, stamp=time.time() + 5.0))
        assert "in the future" in ahead and "max_obs_ahead_s=0.1" in ahead
        now = time.time()
        assert policy.infer(droid_obs(START, stamp=now))["actions"].shape == (1, 7)
        assert "older than the previous one" in error_of(policy, droid_obs(START, stamp=now - 0.5))
        no_pose = droid_obs(START)
        del no_pose["observation/cartesian_position"]
        assert "'observation/cartesian_position' missing" in error_of(policy, no_pose)
        assert "unknown keys ['observation/exterior_image_2_left']" in error_of(
            policy, {**droid_obs(START), "observation/exterior_image_2_left": np.zeros((8, 8, 3))}
        )
        assert "'observation/gripper_position' hold 6 + 2 = 8 numbers" in error_of(
            policy, {**droid_obs(START), "observation/gripper_position": np.array([0.0, 1.0])}
        )
        assert policy.infer(droid_obs(START))["actions"].shape == (1, 7)  # still serving


def test_dry_run_plans_and_reports_but_returns_no_actions():
    with serve() as srv:
        policy = client(srv)
        policy.infer(droid_goal(GOAL))
        reply = policy.infer(droid_obs(START, dry_run=True))
        assert reply["dry_run"] and reply["actions"].shape == (0, 7)
        assert reply["would_send"].shape == (1, 7) and reply["would_send"][0, 0] > 0.01
        assert np.isfinite(reply["energy"])
        assert policy.infer(droid_obs(START))["actions"].shape == (1, 7)  # per request
    with serve(dry_run=True) as srv:
        policy = client(srv)
        assert policy.get_server_metadata()["dry_run"] is True
        policy.infer(droid_goal(GOAL))
        for request in (droid_obs(START), droid_obs(START, dry_run=False)):  # server's wins
            reply = policy.infer(request)
            assert reply["actions"].shape == (0, 7) and reply["would_send"].shape == (1, 7)


def test_metadata_reports_the_model_conventions_keys_and_limits():
    with serve(safety=ServeSafety(max_translation_m=0.02, rate_limit_hz=2.0)) as srv:
        policy = client(srv)
        meta = policy.get_server_metadata()
        assert meta["state_dim"] == 7 and meta["action_dim"] == 7
        assert meta["state_names"] == ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]
        assert meta["action_names"][0] == "dx" and meta["action_kind"] == "ee_delta"
        assert meta["action_high"] == pytest.approx([0.05] * 3 + [0.25] * 3 + [1.0])
        assert meta["views"] == ["exterior", "wrist"] and meta["image_policy"] == "crop"
        assert meta["fps"] is None and meta["obs_keys"] == "droid"
        assert meta["observation_keys"]["cameras"] == {
            "exterior": "observation/exterior_image_1_left",
            "wrist": "observation/wrist_image_left",
        }
        assert meta["observation_keys"]["state"] == [
            "observation/cartesian_position", "observation/gripper_position",
        ]  # fmt: skip
        assert meta["safety"]["max_translation_m"] == 0.02
        assert meta["safety"]["clamped_parts"] == ["xyz", "rotation", "gripper"]
        # The rate limit: a chunk of 1 per 1/2 s; the second request right after waits.
        policy.infer(droid_goal(GOAL))
        assert "rate" not in policy.infer(droid_obs(START))["clamped"][0]
        start = time.monotonic()
        assert "rate" in policy.infer(droid_obs(START))["clamped"][0]
        assert time.monotonic() - start > 0.3


def _joint_model():
    """A tiny 6-D joint-delta world model (as tests/worldmodel/test_layout.py builds one)."""
    from worldmodel.frozen_encoder import FrozenEncoder
    from worldmodel.models.encoder import ENCODER_PRESETS, VisionTransformer
    from worldmodel.models.layout import Layout
    from worldmodel.models.predictor import ACPredictor, PredictorConfig
    from worldmodel.world_model import WorldModel

    torch.manual_seed(0)
    joints = Layout(6, 6, [f"j{i}" for i in range(6)], [f"dj{i}" for i in range(6)], "delta",
                    [-0.2] * 6, [0.2] * 6, fps=15.0)  # fmt: skip
    enc = FrozenEncoder(VisionTransformer(ENCODER_PRESETS["vit_nano_cpu"]))
    pcfg = PredictorConfig(encoder_dim=96, width=48, depth=1, num_heads=2, mlp_dim=64,
                           input_grid=(8, 8), pool_kernel=2, action_dim=6, state_dim=6)  # fmt: skip
    return WorldModel(enc, ACPredictor(pcfg), layout=joints)


def test_a_six_dof_joint_model_sets_the_state_dim_and_names():
    model = _joint_model()
    cfg = ServeConfig(port=0, planner="cem", cem=CEMConfig(samples=8, iterations=1, top_k=2))
    image, state = np.zeros((64, 64, 3), np.uint8), np.zeros(6, np.float32)
    with ServerThread(cfg, lambda c: (model, build_planner(c, model))) as srv:
        policy = client(srv)
        meta = policy.get_server_metadata()
        assert meta["state_dim"] == 6 and meta["action_dim"] == 6 and meta["fps"] == 15.0
        assert meta["state_names"][0] == "j0" and meta["action_kind"] == "delta"
        assert meta["action_high"] == pytest.approx([0.2] * 6)
        assert meta["safety"]["clamped_parts"] == []  # no xyz, rotation or gripper dims
        assert "'goal_state' must have shape (K, 6), got (1, 7)" in error_of(
            policy, {"goal_image": image, "goal_state": np.zeros(7, np.float32)}
        )
        policy.infer({"goal_image": image, "goal_state": state + 0.1})
        seven = {"observation/image": image, "observation/state": np.zeros(7, np.float32)}
        assert "'observation/state' must have shape (6), got (7,)" in error_of(policy, seven)
        reply = policy.infer({"observation/image": image, "observation/state": state})
        assert reply["actions"].shape == (1, 6) and np.abs(reply["actions"]).max() <= 0.2 + 1e-6


def test_obs_key_presets_overrides_and_model_views_are_checked_at_start():
    keys = resolve_obs_keys("droid", ObsKeyMap(cameras=("exterior=observation/image_left",)))
    assert keys.camera_key("exterior") == "observation/image_left"
    assert keys.camera_key("wrist") is None
    with pytest.raises(ValueError, match=r"no camera key for the model's view\(s\) \['wrist'\]"):
        PolicyServer(ServeConfig(port=0, obs_keys="droid", obs_key_map=ObsKeyMap(
            cameras=("exterior=observation/image_left",))),
            lambda c: (TwoViewToy(), build_planner(c)))  # fmt: skip
    for bad, match in ((dict(obs_keys="rlds"), "obs_keys must be one of"),
                       (dict(obs_key_map=ObsKeyMap(cameras=("wrist",))), "'view=key'"),
                       (dict(obs_key_map=ObsKeyMap(state=("prompt",))), "used once"),
                       (dict(max_obs_age_s=-1.0), "max_obs_age_s")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            ServeConfig(**bad)
    with pytest.raises(ValueError, match="max_translation_m"):
        ServeSafety(max_translation_m=0)
    # A single-view model served with the droid preset: the wrist image is accepted, unused.
    req = parse_request(droid_obs(START), keys=resolve_obs_keys("droid"))
    assert req.image.shape == (48, 48, 3) and req.state.tolist() == START.tolist()
    with pytest.raises(RequestError, match=r"hold 6 \+ 1 = 7 numbers; the model's state is 6-D"):
        parse_request(droid_obs(START), state_dim=6, keys=resolve_obs_keys("droid"))
    # ours stays as it was; a 'pad' model pads each camera to a square.
    pad = parse_request(droid_obs(START), views=("exterior", "wrist"),
                        keys=resolve_obs_keys("droid"), image_policy="pad")  # fmt: skip
    assert pad.image.shape == (32, 64, 3) and (pad.image[:2, :32] == 0).all()


def test_hydra_overrides_compose_into_the_new_serve_options():
    from planning.server.config import config_from_dict
    from worldmodel.config import compose, plain_defaults

    raw = compose("serve", ["obs_keys=droid", "safety.max_translation_m=0.02", "dry_run=true",
                            "max_obs_age_s=0.5", "safety.enabled=false",
                            'obs_key_map.cameras=["exterior=observation/image_left"]'],
                  plain_defaults(ServeConfig))  # fmt: skip
    cfg = config_from_dict(raw)
    assert cfg.observation_keys().camera_key("exterior") == "observation/image_left"
    assert (cfg.safety.max_translation_m, cfg.safety.enabled, cfg.dry_run) == (0.02, False, True)
    assert cfg.max_obs_age_s == 0.5


DROID = resolve_obs_keys("droid")
KEYS = st.sampled_from([*CONTROL_KEYS, *DROID.observation_keys(), *DROID.ignored, "junk"])
IMAGE_SHAPES = st.sampled_from([(4, 6, 3), (5, 5, 3), (1, 1, 3), (7, 2, 3), (2, 3, 4, 3), (4, 4)])
IMAGES = hnp.arrays(st.sampled_from([np.uint8, np.uint8, np.float32]), IMAGE_SHAPES)
VALUES = st.one_of(
    st.none(), st.booleans(), st.floats(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=4),
    IMAGES, hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64]), hnp.array_shapes(
        min_dims=0, max_dims=2, max_side=7)),
    st.dictionaries(st.sampled_from(["exterior", "wrist", "x"]), IMAGES | st.integers(0, 9),
                    max_size=3),
)  # fmt: skip


@st.composite
def droid_requests(draw):
    """A valid DROID request (an observation, or a goal by view), then a few keys dropped or
    replaced by random values."""
    floats = st.floats(-1, 1, width=32)
    if draw(st.booleans()):
        msg = {
            "observation/exterior_image_1_left": draw(IMAGES),
            "observation/wrist_image_left": draw(IMAGES),
            "observation/cartesian_position": draw(hnp.arrays(np.float64, (6,), elements=floats)),
            "observation/gripper_position": draw(hnp.arrays(np.float64, (1,), elements=floats)),
            "observation/timestamp": draw(st.floats(0, 2e9)),
        }
    else:
        msg = {"goal_image": {"exterior": draw(IMAGES), "wrist": draw(IMAGES)}}
    for key in draw(st.sets(st.sampled_from(sorted(msg)), max_size=2)):
        del msg[key]
    msg.update(draw(st.dictionaries(KEYS, VALUES, max_size=2)))
    return msg


@settings(max_examples=200, deadline=None, database=None)
@given(msg=droid_requests(), policy=st.sampled_from(["crop", "pad", "resize"]))
def test_random_droid_requests_are_refused_with_request_error_or_valid(msg, policy):
    """The droid preset's parsing (camera assembly, state parts, goal maps, timestamps) raises
    nothing but RequestError, and what it accepts is what the server relies on."""
    try:
        req = parse_request(unpackb(packb(msg)), views=("exterior", "wrist"), max_subgoals=4,
                            keys=DROID, image_policy=policy)  # fmt: skip
    except RequestError:
        return
    for img in (req.image, req.goal_images):
        assert img is None or (img.dtype == np.uint8 and img.shape[-2] == 2 * img.shape[-3])
    assert req.state is None or (req.state.shape == (7,) and np.isfinite(req.state).all())
    assert req.timestamp is None or np.isfinite(req.timestamp)


def test_a_dry_run_leaves_no_trace_in_the_controller():
    """Dry runs must not use up sub-goal budgets or shift the warm start (review finding)."""
    image = np.zeros((2, 32, 32, 3), np.uint8)
    schedule = {"goal_image": {"exterior": image, "wrist": image},
                "goal_state": np.stack([GOAL, GOAL]), "goal_budgets": np.array([2, 5])}  # fmt: skip
    with serve() as srv:
        dry, live = client(srv), client(srv)
        for policy in (dry, live):
            assert policy.infer(schedule)["ok"]
        for _ in range(3):
            assert dry.infer(droid_obs(START, dry_run=True))["subgoal_index"] == 0
        a, b = dry.infer(droid_obs(START)), live.infer(droid_obs(START))
        assert a["subgoal_index"] == b["subgoal_index"] == 0
        np.testing.assert_array_equal(a["actions"], b["actions"])  # same warm start and sampler


class _SlowToy(TwoViewToy):
    def rollout(self, *args, **kwargs):
        time.sleep(0.05)
        return super().rollout(*args, **kwargs)


def test_an_observation_stale_by_the_time_the_plan_is_ready_is_not_sent():
    with serve(_SlowToy(), max_obs_age_s=0.2) as srv:
        policy = client(srv)
        policy.infer(droid_goal(GOAL))
        with pytest.raises(RuntimeError, match="when the plan was ready"):
            policy.infer(droid_obs(START, stamp=time.time() - 0.15))  # fresh on arrival


def test_server_side_clamps_are_reported_in_the_reply_not_logged_as_warnings(caplog):
    import logging

    with serve(safety=ServeSafety(max_translation_m=0.005)) as srv, caplog.at_level(logging.INFO):
        policy = client(srv)
        policy.infer(droid_goal(GOAL))
        reply = policy.infer(droid_obs(START))
    assert "translation" in reply["clamped"][0]
    assert not [r for r in caplog.records if r.name == "planning.robots.safety"]
