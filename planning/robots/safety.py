"""Safety limits enforced inside every adapter; each clamp is returned and logged (a warning,
except a gripper target saturating at its range, which planners do every step: debug).

Order: reject malformed actions (shape, NaN/inf: ValueError), keep the xyz target in the
workspace box, cap the xyz step norm, cap the rotation step norm, keep the gripper target in
range with a change of at most the gripper range. Whatever comes in, what goes out is finite,
inside the action box and inside these limits (tested with random inputs, hypothesis). The
state layout is assumed to match the action layout for xyz and gripper (DROID).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from planning.protocol import ActionLayout
from worldmodel.data.actions import MAX_STEP_ROTATION_RAD, MAX_STEP_TRANSLATION_M

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SafetyLimits:
    """Per-step limits in the robot base frame.

    ``max_translation_m``: L2 norm of the xyz delta; ``max_rotation_rad``: L2 norm of the rotation
    delta; ``workspace_low/high_m``: box the end effector must stay in; ``gripper_low/high``:
    allowed gripper targets; ``rate_limit_hz``: max commands per second (0 = unlimited).
    """

    max_translation_m: float = MAX_STEP_TRANSLATION_M
    max_rotation_rad: float = MAX_STEP_ROTATION_RAD
    workspace_low_m: tuple[float, float, float] = (0.2, -0.4, 0.02)
    workspace_high_m: tuple[float, float, float] = (0.8, 0.4, 0.6)
    gripper_low: float = 0.0
    gripper_high: float = 1.0
    rate_limit_hz: float = 4.0
    layout: ActionLayout = field(default_factory=ActionLayout)
    # Optional per-dim action box (e.g. a joint-space model's recorded bounds); None = the
    # caps above are the box (the published 7-D layout).
    action_low: tuple[float, ...] | None = None
    action_high: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("max_translation_m", "max_rotation_rad"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SafetyLimits.{name} must be > 0, got {getattr(self, name)}")
        low, high = self.workspace_low_m, self.workspace_high_m
        if len(low) != 3 or len(high) != 3 or any(a >= b for a, b in zip(low, high, strict=True)):
            raise ValueError(f"SafetyLimits workspace must be 3 lows < 3 highs, got {low} {high}")
        if not self.gripper_low < self.gripper_high:
            raise ValueError(f"SafetyLimits gripper range empty: {self.gripper_low}")
        if self.rate_limit_hz < 0:
            raise ValueError(f"SafetyLimits.rate_limit_hz must be >= 0, got {self.rate_limit_hz}")
        if (self.action_low is None) != (self.action_high is None):
            raise ValueError("SafetyLimits.action_low and action_high go together")
        if self.action_low is not None:
            lo, hi = tuple(map(float, self.action_low)), tuple(map(float, self.action_high))
            object.__setattr__(self, "action_low", lo)
            object.__setattr__(self, "action_high", hi)
            if len(lo) != len(hi) or any(not a < b for a, b in zip(lo, hi, strict=True)):
                raise ValueError(f"SafetyLimits action box needs low < high per dim: {lo} {hi}")

    @classmethod
    def for_layout(cls, layout, **overrides) -> SafetyLimits:
        """Limits for a model's recorded :class:`~worldmodel.models.layout.Layout`: the
        published 7-D end-effector layout (or None: unknown) keeps the defaults (or
        ``overrides``); any other layout gets its recorded per-dim action box and nothing else:
        its units are the robot's own (a gripper in millimetres or a joint target), so the
        [0, 1] gripper rule and the xyz / rotation caps of the end-effector layout do not
        apply. ``overrides``: any field. The one place that decides which rules fit a layout
        (robot adapters and wm-serve both use it)."""
        if layout is None or layout.is_published:
            return cls(**overrides)
        base = dict(layout=ActionLayout(None, None, None),
                    action_low=layout.action_low, action_high=layout.action_high)  # fmt: skip
        return cls(**{**base, **overrides})

    @classmethod
    def for_model(cls, model, **overrides) -> SafetyLimits:
        """:meth:`for_layout` of ``model.layout`` (a WorldModel; None when it records none)."""
        return cls.for_layout(getattr(model, "layout", None), **overrides)


class ClampReport(NamedTuple):
    """What the filter changed: requested vs sent action and the limits that fired."""

    requested: np.ndarray
    sent: np.ndarray
    reasons: tuple[str, ...]  # subset of translation, rotation, workspace, box, gripper, rate

    @property
    def clamped(self) -> bool:
        return bool(self.reasons)


class SafetyFilter:
    """Clamps actions to :class:`SafetyLimits` given the current state and time."""

    def __init__(
        self, limits: SafetyLimits | None = None, action_dim: int = 7, quiet: bool = False
    ) -> None:
        """``quiet``: log clamps at debug level (a caller that reports them itself, e.g.
        wm-serve's reply, which would otherwise log one warning per row of every chunk)."""
        self.limits = limits or SafetyLimits()
        self.quiet = quiet
        self.limits.layout.check(action_dim)
        if self.limits.action_low is not None and len(self.limits.action_low) != action_dim:
            raise ValueError(
                f"SafetyLimits action box has {len(self.limits.action_low)} dims, actions have "
                f"{action_dim}"
            )
        self.action_dim = action_dim
        self._last_sent_s: float | None = None

    def wait_s(self, now_s: float) -> float:
        """Seconds to wait before the next command respects the rate limit."""
        hz = self.limits.rate_limit_hz
        if hz == 0 or self._last_sent_s is None:
            return 0.0
        return max(0.0, self._last_sent_s + 1.0 / hz - now_s)

    def mark_sent(self, now_s: float) -> None:
        self._last_sent_s = now_s

    def check_action(self, action: np.ndarray) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.action_dim,):
            raise ValueError(f"action must have shape ({self.action_dim},), got {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"action contains NaN or inf: {a}")
        return a

    def filter(self, action: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, ClampReport]:
        """Return the (A,) action to send given the (S,) state; log a warning on any clamp."""
        lim, lay = self.limits, self.limits.layout
        requested = self.check_action(action)
        state = np.asarray(state, dtype=np.float64)
        if not np.all(np.isfinite(state)):  # limits relative to a bad reading mean nothing
            raise ValueError(f"state contains NaN or inf (a bad sensor reading?): {state}")
        out, reasons = requested.copy(), []
        xyz, rot, g = lay.xyz_slice(), lay.rotation_slice(), lay.gripper_index
        if xyz is not None:
            pos = np.asarray(state[xyz], dtype=np.float64)
            target = np.clip(pos + out[xyz], lim.workspace_low_m, lim.workspace_high_m)
            if not np.allclose(target, pos + out[xyz]):
                out[xyz] = target - pos
                reasons.append("workspace")
            norm = np.linalg.norm(out[xyz])  # scaling towards pos keeps a box target inside
            if norm > lim.max_translation_m:
                out[xyz] *= lim.max_translation_m / norm
                reasons.append("translation")
        if rot is not None:
            norm = np.linalg.norm(out[rot])
            if norm > lim.max_rotation_rad:
                out[rot] *= lim.max_rotation_rad / norm
                reasons.append("rotation")
        if g is not None:
            grip = float(state[g])
            target = float(np.clip(grip + out[g], lim.gripper_low, lim.gripper_high))
            # A reading outside the range (sensor noise) must not turn the way back into a
            # change larger than the range itself: the delta stays in the action box.
            span = lim.gripper_high - lim.gripper_low
            delta = float(np.clip(target - grip, -span, span))
            if not np.isclose(delta, out[g]):
                out[g] = delta
                reasons.append("gripper")
        if lim.action_low is not None:  # last: no rule above may leave the box
            boxed = np.clip(out, lim.action_low, lim.action_high)
            if not np.allclose(boxed, out):
                out = boxed
                reasons.append("box")
        report = ClampReport(requested.astype(np.float32), out.astype(np.float32), tuple(reasons))
        if report.clamped:  # a gripper pushed past fully open/closed is routine: debug level
            routine = self.quiet or reasons == ["gripper"]
            level = logging.DEBUG if routine else logging.WARNING
            log.log(level, "safety clamp (%s): requested %s sent %s", ",".join(reasons),
                    np.round(requested, 4), np.round(out, 4))  # fmt: skip
        return report.sent, report
