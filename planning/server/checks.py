"""What wm-serve checks around a plan: the safety limits applied to every returned action
(:class:`ServeSafety`, :class:`ChunkSafety`) and the age of an observation
(:class:`ObservationClock`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from planning.robots.safety import SafetyFilter, SafetyLimits
from planning.server.wire import RequestError
from worldmodel.models.layout import Layout

_LIMITS = SafetyLimits()


@dataclass(frozen=True)
class ServeSafety:
    """Server-side safety limits (:class:`planning.robots.safety.SafetyLimits`) applied to every
    action of a returned chunk, the chunk's rows integrated from the request's state.

    What is clamped follows the model's layout: for the 7-D end-effector delta (``ee_delta``)
    the xyz step, the rotation step, the workspace box and the gripper range; for any other
    layout nothing beyond the planner's action box (the model's recorded per-dim bounds, which
    every reply is checked against): a joint-space gripper is in the robot's own units, so the
    [0, 1] gripper rule does not apply. ``rate_limit_hz``: at
    most this many actions per second on one connection, so a chunk of k actions is answered
    no sooner than k / rate_limit_hz s after the previous chunk (0: no pacing; the robot
    adapter's own limit still applies)."""

    enabled: bool = True
    max_translation_m: float = _LIMITS.max_translation_m
    max_rotation_rad: float = _LIMITS.max_rotation_rad
    workspace_low_m: tuple[float, float, float] = _LIMITS.workspace_low_m
    workspace_high_m: tuple[float, float, float] = _LIMITS.workspace_high_m
    gripper_low: float = _LIMITS.gripper_low
    gripper_high: float = _LIMITS.gripper_high
    rate_limit_hz: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"ServeSafety.enabled must be true or false, got {self.enabled}")
        for name in ("workspace_low_m", "workspace_high_m"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        self.limits(Layout())  # SafetyLimits validates the values

    def limits(self, layout: Layout) -> SafetyLimits:
        """The :class:`SafetyLimits` for a model with ``layout`` (parts as the class says:
        :meth:`SafetyLimits.for_layout` decides which rules fit it)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "enabled"}
        return SafetyLimits.for_layout(layout, **values)

    def describe(self, layout: Layout) -> dict:
        """Plain form for the server's metadata: the limits and which parts are clamped."""
        parts = self.limits(layout).layout
        clamped = [name for name, on in (("xyz", parts.xyz_dims), ("rotation", parts.rotation_dims),
                   ("gripper", parts.gripper_index)) if on is not None]  # fmt: skip
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["workspace_low_m"], out["workspace_high_m"] = (
            list(self.workspace_low_m), list(self.workspace_high_m))  # fmt: skip
        return {**out, "clamped_parts": clamped if self.enabled else []}


class ChunkSafety:
    """Applies :class:`ServeSafety` to the rows of an action chunk, one connection's worth."""

    def __init__(self, cfg: ServeSafety, layout: Layout) -> None:
        self.cfg = cfg
        # clamps go back in every reply ("clamped"): logged at debug level, not once per row
        self.filter = SafetyFilter(cfg.limits(layout), action_dim=layout.action_dim, quiet=True)

    def apply(self, chunk: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, list[list[str]]]:
        """(k, A) chunk, (S,) state -> (sent (k, A) float32, clamp reasons per row). Row i is
        filtered from the state the rows before it lead to (xyz and gripper added: the parts
        the limits read), so the workspace box holds for the whole chunk."""
        if not self.cfg.enabled:
            return chunk, [[] for _ in chunk]
        parts = self.filter.limits.layout
        state = np.asarray(state, dtype=np.float64).copy()
        sent, reasons = [], []
        for row in chunk:
            out, report = self.filter.filter(row, state)
            sent.append(out)
            reasons.append(list(report.reasons))
            if parts.xyz_dims is not None:
                state[parts.xyz_slice()] += out[parts.xyz_slice()]
            if parts.gripper_index is not None:
                state[parts.gripper_index] += out[parts.gripper_index]
        return np.stack(sent).astype(np.float32), reasons


class ObservationClock:
    """Refuses stale observations on one connection (:class:`RequestError`).

    A request's ``observation/timestamp`` is the capture time on the client's clock (seconds,
    ``time.time()``); the server compares it with its own ``time.time()`` on arrival, which
    assumes the two clocks are synchronised (same machine, or NTP/PTP to well under
    ``max_age_s``). Refused: an age over ``max_age_s``, a timestamp more than ``max_ahead_s``
    in the server's future (a clock that runs ahead would hide staleness), and a timestamp
    older than the previous one on the connection (a replayed or reordered observation).
    ``max_age_s = 0`` turns off the two clock comparisons (unsynchronised clocks); the
    ordering check stays. Requests without a timestamp are not checked."""

    def __init__(self, max_age_s: float, max_ahead_s: float) -> None:
        self.max_age_s, self.max_ahead_s = max_age_s, max_ahead_s
        self.last: float | None = None

    def check(self, stamp: float | None, now: float) -> float | None:
        """The observation's age in seconds (None without a timestamp), or RequestError."""
        if stamp is None:
            return None
        age = now - stamp
        if self.max_age_s > 0 and age > self.max_age_s:
            raise RequestError(f"stale observation: age {age:.3f} s > max_obs_age_s="
                               f"{self.max_age_s} (clocks of client and server synchronised?)")  # fmt: skip
        if self.max_age_s > 0 and -age > self.max_ahead_s:
            raise RequestError(f"observation timestamp {-age:.3f} s in the future > "
                               f"max_obs_ahead_s={self.max_ahead_s} (client clock ahead?)")  # fmt: skip
        if self.last is not None and stamp < self.last:
            raise RequestError(f"observation timestamp {stamp} is older than the previous one "
                               f"({self.last}) on this connection")  # fmt: skip
        self.last = stamp
        return age

    def check_sent(self, stamp: float | None, now: float) -> float | None:
        """The observation's age when its plan is ready to leave (None without a timestamp or
        with the clock comparison off), or RequestError when it is stale by then: a chunk
        planned on a frame that is stale by now is not sent."""
        if stamp is None or self.max_age_s <= 0:
            return None
        age = now - stamp
        if age > self.max_age_s:
            raise RequestError(
                f"stale observation: age {age:.3f} s when the plan was ready > "
                f"max_obs_age_s={self.max_age_s}; no action sent"
            )
        return age


def check_clock_limits(max_age_s: float, max_ahead_s: float) -> None:
    """ValueError unless both limits are finite and >= 0."""
    for name, value in (("max_obs_age_s", max_age_s), ("max_obs_ahead_s", max_ahead_s)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"ServeConfig.{name} must be >= 0, got {value}")
