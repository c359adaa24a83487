"""Property tests of the safety filter and MPC's executed-action filters (#22): random finite
and non-finite actions and states never crash with anything but ValueError, and never yield a
non-finite command, one outside the action box, or one that breaks the safety limits."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from planning.mpc import MPCConfig
from planning.robots import SafetyFilter, SafetyLimits
from worldmodel.data.actions import ACTION_HIGH, ACTION_LOW

LIMITS = SafetyLimits(rate_limit_hz=0.0)
BOX_LOW, BOX_HIGH = np.array(ACTION_LOW), np.array(ACTION_HIGH)
TOL = 1e-5

# Any float64 including NaN, +-inf, huge and subnormal values; and plausible finite ones.
any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)
finite = st.floats(-10.0, 10.0, allow_nan=False)
vec7_any = arrays(np.float64, 7, elements=any_float)
vec7_finite = arrays(np.float64, 7, elements=finite)
vectors = st.one_of(vec7_any, vec7_finite)


def _in_limits(sent: np.ndarray, state: np.ndarray) -> None:
    assert sent.shape == (7,) and np.all(np.isfinite(sent)), sent
    assert np.all(sent >= BOX_LOW - TOL) and np.all(sent <= BOX_HIGH + TOL), sent
    assert np.linalg.norm(sent[:3]) <= LIMITS.max_translation_m + TOL
    assert np.linalg.norm(sent[3:6]) <= LIMITS.max_rotation_rad + TOL
    low, high = np.array(LIMITS.workspace_low_m), np.array(LIMITS.workspace_high_m)
    pos = state[:3]
    if np.all(pos >= low) and np.all(pos <= high):  # from inside the workspace, stay inside
        assert np.all(pos + sent[:3] >= low - TOL) and np.all(pos + sent[:3] <= high + TOL)
    grip = state[6]
    if LIMITS.gripper_low <= grip <= LIMITS.gripper_high:
        assert LIMITS.gripper_low - TOL <= grip + sent[6] <= LIMITS.gripper_high + TOL


@settings(max_examples=400, deadline=None)
@given(action=vectors, state=vectors)
def test_safety_filter_output_is_finite_boxed_and_limited(action, state):
    f = SafetyFilter(LIMITS)
    try:
        sent, report = f.filter(action, state)
    except ValueError as err:  # the only refusal: a non-finite action or state
        assert not (np.all(np.isfinite(action)) and np.all(np.isfinite(state))), err
        assert "NaN or inf" in str(err)
        return
    _in_limits(np.asarray(sent, dtype=np.float64), np.asarray(state, dtype=np.float64))
    np.testing.assert_array_equal(report.sent, sent)


@settings(max_examples=200, deadline=None)
@given(
    chunk=arrays(np.float32, (3, 7), elements=st.floats(-1, 1, width=32)),
    state=vectors,
    close=st.one_of(st.none(), st.floats(0.05, 1.0)),
    hold=st.booleans(),
)
def test_mpc_execute_then_filter_never_leaves_the_box(chunk, state, close, hold):
    """MPC's gripper filters on a boxed plan, then the safety filter: every row boxed."""
    chunk = np.clip(chunk, BOX_LOW, BOX_HIGH).astype(np.float32)
    cfg = MPCConfig(gripper_close_at=close, hold_arm_on_gripper=hold)
    try:
        rows = cfg.execute(chunk, state)
    except ValueError:
        assert not np.all(np.isfinite(state))
        return
    assert np.all(np.isfinite(rows))
    assert np.all(np.abs(rows[:, -1]) <= 1.0 + TOL), rows
    for row in rows:
        sent, _ = SafetyFilter(LIMITS).filter(row, state)
        _in_limits(np.asarray(sent, dtype=np.float64), np.asarray(state, dtype=np.float64))
