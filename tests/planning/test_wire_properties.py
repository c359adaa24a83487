"""Property tests of wm-serve's wire format and output check (#22): random bytes, maps and
arrays (random dtypes and shapes, NaN and inf included) never raise anything but RequestError
in ``unpackb`` + ``parse_request``; ``packb``/``unpackb`` round trips are exact; and a running
server answers random finite and non-finite states with an error frame or with finite actions
inside the action box, never anything else."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from websockets.sync.client import connect

from planning.mpc import MPCConfig
from planning.planners.cem import CEMConfig
from planning.server.config import ServeConfig
from planning.server.serve import ServerThread
from planning.server.wire import (
    IGNORED_KEYS,
    REQUEST_KEYS,
    Request,
    RequestError,
    packb,
    parse_request,
    unpackb,
)
from worldmodel.data.actions import ACTION_HIGH, ACTION_LOW

FAST = settings(max_examples=150, deadline=None, database=None)
KEYS = st.sampled_from((*REQUEST_KEYS, *IGNORED_KEYS, "junk"))

# Plain msgpack values, and maps that look like openpi's ndarray / numpy-scalar encodings.
SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=8) | st.binary(max_size=16)
)  # fmt: skip
DTYPE_NAMES = st.sampled_from(["|u1", "<f4", ">f8", "<i8", "|b1", "<c8", "|O", "|V4", "|S0",
                               "<U2", "<M8[s]", "f2", "zz"]) | st.text(max_size=6)  # fmt: skip
FAKE_NDARRAY = st.fixed_dictionaries({
    b"__ndarray__": st.just(True), b"data": st.binary(max_size=64) | SCALARS,
    b"dtype": DTYPE_NAMES | SCALARS,
    b"shape": st.lists(st.integers(-2, 2**64 - 1) | st.floats(), max_size=4) | SCALARS,
})  # fmt: skip


@st.composite
def mutated_ndarray(draw):
    """A real array's wire map with one field replaced: data that almost fits."""
    arr = draw(hnp.arrays(st.sampled_from(["|u1", "<f4", ">i2"]), hnp.array_shapes(max_side=4)))
    enc = {b"__ndarray__": True, b"data": arr.tobytes(), b"dtype": arr.dtype.str,
           b"shape": list(arr.shape)}  # fmt: skip
    field = draw(st.sampled_from([b"data", b"dtype", b"shape"]))
    text = arr.tobytes().decode("latin-1")  # the right length, the wrong type
    enc[field] = draw(FAKE_NDARRAY.map(lambda fake: fake[field]) | st.just(text))
    return enc


FAKE_GENERIC = st.fixed_dictionaries(
    {b"__npgeneric__": st.just(True), b"data": SCALARS, b"dtype": DTYPE_NAMES | SCALARS}
)
VALUES = st.recursive(
    SCALARS | FAKE_NDARRAY | mutated_ndarray() | FAKE_GENERIC,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(max_size=4) | st.integers(-(2**63), 2**63 - 1) | st.binary(max_size=4),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)

# Real arrays of every dtype the wire carries (not complex/object/void), NaN and inf included.
WIRE_DTYPES = (
    hnp.boolean_dtypes() | hnp.integer_dtypes(endianness="?")
    | hnp.unsigned_integer_dtypes(endianness="?") | hnp.floating_dtypes(endianness="?")
    | hnp.datetime64_dtypes() | hnp.byte_string_dtypes(max_len=3)
    | hnp.unicode_string_dtypes(max_len=3)
)  # fmt: skip
SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=8)
ARRAYS = st.one_of(
    hnp.arrays(WIRE_DTYPES, SHAPES),
    hnp.arrays(np.float32, st.sampled_from([(7,), (1, 7), (2, 7), (3,)])),  # state-like
    hnp.arrays(np.uint8, st.sampled_from([(8, 8, 3), (2, 8, 8, 3), (8, 8), (0, 8, 8, 3)])),
)


def parse_or_refuse(payload: bytes) -> Request | None:
    """unpackb + parse_request; None when refused. Any other exception fails the test."""
    try:
        return parse_request(unpackb(payload, max_bytes=1 << 20), max_subgoals=4)
    except RequestError:
        return None


def check_valid(req: Request) -> None:
    """What the server relies on for an accepted request."""
    for arr in (req.state, req.goal_states):
        assert arr is None or (arr.dtype == np.float32 and np.isfinite(arr).all())
    for img in (req.image, req.goal_images):
        assert img is None or (img.dtype == np.uint8 and img.shape[-1] == 3)
    assert req.goal_images is None or 1 <= len(req.goal_images) <= 4


@FAST
@example(b"\x81\x91\x01\x01")  # a map whose key is a list (unhashable)
@example(b"\x81\x81\x01\x01\x01")  # a map whose key is a map
@example(b"\xd6\xff\x00\x00\x00\x01")  # a msgpack timestamp
@given(st.binary(max_size=256))
def test_random_bytes_are_refused_with_request_error_only(data):
    req = parse_or_refuse(data)
    if req is not None:
        check_valid(req)


# Cases that once escaped as TypeError / OverflowError / ValueError (not RequestError).
_NDARRAY = {b"__ndarray__": True, b"dtype": "|u1", b"shape": [2]}


@FAST
@example({"observation/state": {**_NDARRAY, b"data": "ab"}})  # text, not bytes
@example({"observation/state": {**_NDARRAY, b"data": b"", b"dtype": "|S0", b"shape": [0]}})
@example({"observation/state": {**_NDARRAY, b"data": b"", b"shape": [2**32, 2**32]}})
@example({"reset": {b"__npgeneric__": True, b"data": 300, b"dtype": "|u1"}})  # overflow
@example({"reset": {b"__npgeneric__": True, b"data": 1, b"dtype": "|O"}})
@example({"goal_image": {**_NDARRAY, b"data": b"", b"shape": [0, 8, 8, 3]}})  # no sub-goal
@example({"goal_image": {**_NDARRAY, b"data": bytes(192), b"shape": [1, 8, 8, 3]},
          "goal_budgets": [[1, 2], [3]]})  # ragged  # fmt: skip
@example({"prompt": float("nan")})  # non-finite in an ignored key
@given(st.dictionaries(KEYS, VALUES, max_size=4) | VALUES)
def test_random_msgpack_maps_are_refused_with_request_error_only(msg):
    req = parse_or_refuse(msgpack.packb(msg, use_bin_type=True))
    if req is not None:
        check_valid(req)


@FAST
@given(st.dictionaries(KEYS, ARRAYS | st.floats() | st.lists(st.floats(), max_size=8),
                       max_size=4))  # fmt: skip
def test_random_arrays_in_request_fields_are_refused_or_valid(msg):
    req = parse_or_refuse(packb(msg))
    if req is not None:
        check_valid(req)
    floats = [np.asarray(v) for v in msg.values() if isinstance(v, np.ndarray | float | list)]
    if any(a.dtype.kind == "f" and not np.isfinite(a).all() for a in floats if a.size):
        assert req is None  # NaN or inf in any float field is refused


def same(a, b) -> bool:
    """Exact equality: arrays and numpy scalars by dtype, shape and bytes (NaN payloads too)."""
    if isinstance(a, np.float64):  # a subclass of float: travels as a msgpack float
        return same(float(a), b)
    if isinstance(a, np.ndarray | np.generic):
        return (
            type(a) is type(b) and a.dtype == b.dtype and np.shape(a) == np.shape(b)
            and a.tobytes() == b.tobytes()
        )  # fmt: skip
    if isinstance(a, float):
        return isinstance(b, float) and (a == b or (math.isnan(a) and math.isnan(b)))
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


NUMERIC_SCALARS = st.one_of(
    hnp.from_dtype(d)
    for d in (np.dtype(t) for t in ("?", "i1", "u2", "i4", "u8", "i8", "f2", "f4", "f8"))
).map(lambda v: v.dtype.type(v))
WIRE_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text()
    | st.binary() | hnp.arrays(WIRE_DTYPES, SHAPES) | NUMERIC_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=10,
)  # fmt: skip


@FAST
@given(WIRE_VALUES)
def test_packb_unpackb_round_trip_is_exact(value):
    back = unpackb(packb(value))
    assert same(value, back), (value, back)
    if isinstance(back, np.ndarray):
        back[...] = back  # decoded arrays are writable copies


# The box the planner and the executed action must respect.
LOW, HIGH = np.asarray(ACTION_LOW, np.float32), np.asarray(ACTION_HIGH, np.float32)
START = np.array([0.45, 0.0, 0.30, 0.0, 0.0, 0.0, 0.5], np.float32)
IMG = np.zeros((8, 8, 3), np.uint8)


@pytest.fixture(scope="module")
def ws():
    """One connection to a toy server whose execution filter closes the gripper (so an odd
    gripper state can push an action out of the box)."""
    cfg = ServeConfig(port=0, planner="cem", cem=CEMConfig(samples=32, iterations=2, top_k=4),
                      mpc=MPCConfig(gripper_close_at=0.1))  # fmt: skip
    with ServerThread(cfg) as srv, connect(f"ws://127.0.0.1:{srv.port}", max_size=None) as conn:
        unpackb(conn.recv(timeout=10))
        yield conn


def ask(conn, msg):
    conn.send(packb(msg))
    reply = conn.recv(timeout=30)
    return reply if isinstance(reply, str) else unpackb(reply)


FLOATS = st.floats(width=32) | st.sampled_from([np.nan, np.inf, -np.inf, 3e38, -1e30, 1e-40])
STATES = st.one_of(
    st.lists(st.floats(-1.0, 1.0, width=32), min_size=7, max_size=7),  # ordinary
    st.lists(FLOATS, min_size=7, max_size=7),  # anything, non-finite included
).map(lambda xs: np.asarray(xs, np.float32))


@settings(max_examples=40, deadline=None, database=None)
@given(goal=STATES | st.none(), state=STATES)
def test_server_never_sends_a_non_finite_or_out_of_box_action(ws, goal, state):
    if goal is not None:
        reply = ask(ws, {"goal_image": IMG, "goal_state": goal, "reset": True})
        assert isinstance(reply, dict) or reply.startswith("error: ")
        if not np.isfinite(goal).all():
            assert "'goal_state' contains NaN or inf" in reply
    reply = ask(ws, {"observation/image": IMG, "observation/state": state})
    if isinstance(reply, str):
        assert reply.startswith("error: ")
        if not np.isfinite(state).all():
            assert "'observation/state' contains NaN or inf" in reply
        return
    actions = reply["actions"]
    assert actions.dtype == np.float32 and np.isfinite(actions).all()
    assert (actions >= LOW - 1e-6).all() and (actions <= HIGH + 1e-6).all(), actions
    assert np.isfinite(state).all()
