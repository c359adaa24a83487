"""worldmodel.config.from_mapping: the one mapping -> config dataclass path of every CLI."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from worldmodel.config import from_mapping, plain_defaults


@dataclass(frozen=True)
class Inner:
    a: int = 1
    pair: tuple[float, float] = (0.0, 1.0)


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=lambda: Inner(a=5))
    maybe: Inner | None = None
    items: tuple[Inner, ...] = ()
    sizes: tuple[int, ...] = (1, 2)


PRESETS = {Inner: {"big": Inner(a=100, pair=(2.0, 3.0))}}


def test_nested_mappings_override_the_field_default_and_lists_become_tuples():
    cfg = from_mapping(Outer, {"inner": {"pair": [4, 5]}, "sizes": [3], "items": [{"a": 2}]})
    assert cfg.inner == Inner(a=5, pair=(4, 5))  # a=5 kept from the field's default
    assert cfg.sizes == (3,) and cfg.items == (Inner(a=2),)
    assert from_mapping(Outer, {"maybe": {"a": 3}}).maybe == Inner(a=3)
    assert from_mapping(Outer, {"maybe": None}).maybe is None


def test_presets_by_name_and_unknown_keys_and_presets_are_named():
    assert from_mapping(Outer, {"inner": "big"}, presets=PRESETS).inner.a == 100
    with pytest.raises(ValueError, match=r"Outer.inner: unknown preset 'huge'; known: \['big'\]"):
        from_mapping(Outer, {"inner": "huge"}, presets=PRESETS)
    with pytest.raises(ValueError, match=r"cfg.yaml.inner: unknown keys \['b'\]"):
        from_mapping(Outer, {"inner": {"b": 1}}, where="cfg.yaml")
    with pytest.raises(ValueError, match=r"Outer: unknown keys \['nme'\]; known: \["):
        from_mapping(Outer, {"nme": "y"})


def test_renamed_keys_warn_and_map_and_schema_placeholders_vanish():
    with pytest.warns(DeprecationWarning, match="'title' is deprecated, use 'name'"):
        assert from_mapping(Outer, {"title": "t"}, renamed={"title": "name"}).name == "t"
    assert from_mapping(Outer, {"title": None}, renamed={"title": "name"}).name == "x"


def test_plain_defaults_round_trip():
    plain = plain_defaults(Outer)
    assert plain["inner"] == {"a": 5, "pair": [0.0, 1.0]} and plain["sizes"] == [1, 2]
    assert from_mapping(Outer, plain) == Outer()
