"""Which request keys carry an observation, and how separate camera images become the model's
view mosaic.

A preset names the keys a kind of client sends (``ServeConfig.obs_keys``); ``ObsKeyMap``
(``ServeConfig.obs_key_map``) overrides any role of it:

- ``ours``: ``observation/image`` (the model's views side by side, built by the client),
  ``observation/state`` (the model's state); ``prompt`` and ``observation/wrist_image`` are
  accepted and ignored.
- ``droid``: the keys of openpi's DROID example client (``examples/droid/main.py`` of
  Physical-Intelligence/openpi): ``observation/exterior_image_1_left`` and
  ``observation/wrist_image_left`` (the ``exterior`` and ``wrist`` views, one image each; the
  server builds the mosaic), the state ``observation/cartesian_position`` (6: xyz, extrinsic
  xyz Euler, the end-effector pose of DROID's ``robot_state``) followed by
  ``observation/gripper_position`` (1); ``observation/joint_position`` and ``prompt`` are
  accepted and ignored (the published layout's state is the end-effector pose, not joints).

Both take ``observation/timestamp`` (seconds, the client's ``time.time()``) for the staleness
check of :mod:`planning.server.checks`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from worldmodel.data.images import fit_frames
from worldmodel.models.views import mosaic

TIMESTAMP_KEY = "observation/timestamp"
# Keys of every request whatever the preset (goal and control; see planning.server.serve).
CONTROL_KEYS = ("reset", "goal_image", "goal_state", "goal_budgets", "goal_id", "dry_run")


@dataclass(frozen=True)
class ObsKeys:
    """The resolved observation keys of a preset (with any overrides).

    ``image``: key of a ready-made mosaic of the model's views (None: none accepted);
    ``cameras``: ``(view, key)`` pairs, one image per camera, assembled by the server;
    ``state``: keys whose values, flattened and concatenated in this order, are the state;
    ``timestamp``: key of the observation's capture time; ``ignored``: keys accepted and
    dropped (a client's extras such as ``prompt``)."""

    name: str
    image: str | None
    cameras: tuple[tuple[str, str], ...]
    state: tuple[str, ...]
    timestamp: str = TIMESTAMP_KEY
    ignored: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.image is None and not self.cameras:
            raise ValueError(f"obs keys {self.name!r}: need an image key or camera keys")
        if not self.state:
            raise ValueError(f"obs keys {self.name!r}: need at least one state key")
        views = [v for v, _ in self.cameras]
        if len(set(views)) != len(views):
            raise ValueError(f"obs keys {self.name!r}: a view named twice in cameras {views}")
        roles = [*CONTROL_KEYS, *self.observation_keys(), *self.ignored]
        twice = sorted({k for k in roles if roles.count(k) > 1})
        if twice or any(not k for k in roles):
            raise ValueError(f"obs keys {self.name!r}: keys must be non-empty, used once and "
                             f"not a goal or control key, got {twice or roles}")  # fmt: skip

    def observation_keys(self) -> list[str]:
        """Every key with a role (image, cameras, state, timestamp)."""
        image = [self.image] if self.image is not None else []
        return [*image, *(k for _, k in self.cameras), *self.state, self.timestamp]

    def camera_key(self, view: str) -> str | None:
        return dict(self.cameras).get(view)

    def check_views(self, views: tuple[str, ...]) -> None:
        """ValueError unless a model taking ``views`` can be served: the mosaic key, or a
        camera key for each view (checked at server start, before any request)."""
        missing = [v for v in views if self.camera_key(v) is None]
        if self.image is None and missing:
            raise ValueError(
                f"obs_keys {self.name!r} has no camera key for the model's view(s) {missing} "
                f"(views {list(views)}); set obs_key_map.cameras, e.g. ['{missing[0]}=<key>']"
            )

    def describe(self) -> dict:
        """Plain form for the server's metadata."""
        return {"preset": self.name, "image": self.image, "cameras": dict(self.cameras),
                "state": list(self.state), "timestamp": self.timestamp,
                "ignored": list(self.ignored)}  # fmt: skip


OBS_KEY_PRESETS: dict[str, ObsKeys] = {
    "ours": ObsKeys(
        "ours", "observation/image", (), ("observation/state",),
        ignored=("prompt", "observation/wrist_image"),
    ),
    "droid": ObsKeys(
        "droid", None,
        (("exterior", "observation/exterior_image_1_left"),
         ("wrist", "observation/wrist_image_left")),
        ("observation/cartesian_position", "observation/gripper_position"),
        ignored=("prompt", "observation/joint_position"),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class ObsKeyMap:
    """Overrides of a preset's keys; None keeps the preset's. ``image: ""`` accepts no mosaic;
    ``cameras``: ``"view=key"`` strings (e.g. ``"exterior=observation/image_left"``) replacing
    the preset's cameras; ``state``, ``ignored``: key lists replacing the preset's."""

    image: str | None = None
    cameras: tuple[str, ...] | None = None
    state: tuple[str, ...] | None = None
    timestamp: str | None = None
    ignored: tuple[str, ...] | None = None


def resolve_obs_keys(preset: str, overrides: ObsKeyMap | None = None) -> ObsKeys:
    """The preset ``preset`` with ``overrides`` applied; ValueError naming what is wrong."""
    if preset not in OBS_KEY_PRESETS:
        raise ValueError(f"obs_keys must be one of {sorted(OBS_KEY_PRESETS)}, got {preset!r}")
    base, o = OBS_KEY_PRESETS[preset], overrides or ObsKeyMap()
    cameras = base.cameras
    if o.cameras is not None:
        pairs = [str(c).split("=", 1) for c in o.cameras]
        if any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
            raise ValueError(f"obs_key_map.cameras must be 'view=key' strings, got {o.cameras}")
        cameras = tuple((v.strip(), k.strip()) for v, k in pairs)
    image = base.image if o.image is None else (o.image or None)
    changed = o != ObsKeyMap()
    return ObsKeys(
        f"{preset}+overrides" if changed else preset, image, cameras,
        tuple(o.state) if o.state is not None else base.state,
        o.timestamp if o.timestamp is not None else base.timestamp,
        tuple(o.ignored) if o.ignored is not None else base.ignored,
    )  # fmt: skip


def square_side(image: np.ndarray, policy: str) -> int:
    """Side of ``image`` (..., H, W, 3) made square by ``policy`` without resampling: the
    shorter side for ``crop``, the longer for ``pad`` and ``resize``."""
    h, w = image.shape[-3:-1]
    return min(h, w) if policy == "crop" else max(h, w)


def assemble_views(images: list[np.ndarray], policy: str) -> np.ndarray:
    """Separate camera images (each (H_i, W_i, 3) or (K, H_i, W_i, 3) uint8, in the model's
    view order) -> their mosaic (..., S, V * S, 3): each fitted to a square by ``policy``
    (:func:`worldmodel.data.images.fit_frames`, as the training frames were) and resized to
    the same side S, the smallest view's square side (no view is upsampled)."""
    side = min(square_side(img, policy) for img in images)
    return mosaic([fit_frames(img, side, policy) for img in images])
