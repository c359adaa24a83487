"""The bad-input and fault battery (#22): shared helpers.

Every case asserts three things: the specific error (type and a message naming the file or
field), that no file was changed (``Snapshot``: byte-identical before and after), and that the
process or server keeps serving afterwards.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest


class Snapshot:
    """Every file under a folder with its SHA-256: ``snap.assert_unchanged()`` after the fault."""

    def __init__(self, *roots: Path) -> None:
        self.roots = [Path(r) for r in roots]
        self.before = self._take()

    def _take(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for root in self.roots:
            if root.is_file():
                out[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
                continue
            for p in sorted(root.rglob("*")):
                if p.is_file():
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        return out

    def assert_unchanged(self) -> None:
        after = self._take()
        added = sorted(set(after) - set(self.before))
        removed = sorted(set(self.before) - set(after))
        changed = sorted(k for k in self.before.keys() & after.keys() if self.before[k] != after[k])
        assert not (added or removed or changed), (
            f"files changed by a failed call: added={added} removed={removed} changed={changed}"
        )


@pytest.fixture
def snapshot():
    """``snap = snapshot(folder, ...)`` records every file; ``snap.assert_unchanged()`` checks."""
    return Snapshot
