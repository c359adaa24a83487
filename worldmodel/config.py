"""One way from a Hydra/YAML mapping to a frozen, validated config dataclass, for every CLI.

Each CLI is a frozen dataclass whose field defaults are the only defaults; its YAML file under
``configs/`` only overrides them, and the command line overrides both. :func:`from_mapping`
builds the dataclass: nested dataclasses recursively (a mapping overrides the field's default
value; a string names a preset), lists become tuples where the field is a tuple, unknown keys
raise naming every offender and the known keys, and renamed keys are accepted for one release
with a deprecation warning. :func:`run_cli` is the Hydra entry point shared by every CLI.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"  # works from any cwd
T = TypeVar("T")


def plain_defaults(cls: type) -> dict:
    """Dataclass defaults as plain YAML-able values (nested dataclasses -> dicts, tuples ->
    lists): the Hydra schema of a CLI, so that every field can be overridden from the command
    line while the dataclass stays the one place that holds defaults."""

    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        return value

    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = plain(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = plain(f.default_factory())
    return out


def _dataclass_in(tp: Any) -> type | None:
    """The dataclass of a field type (``X`` or ``X | None``), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        return found[0] if len(found) == 1 else None
    return None


def _is_tuple(tp: Any) -> bool:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_is_tuple(a) for a in typing.get_args(tp))
    return tp is tuple or typing.get_origin(tp) is tuple


def _tuple_items(tp: Any) -> Any:
    """The item type of ``tuple[X, ...]`` (None for fixed-length or untyped tuples)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next((_tuple_items(a) for a in typing.get_args(tp) if _is_tuple(a)), None)
    args = typing.get_args(tp)
    return args[0] if len(args) == 2 and args[1] is Ellipsis else None


def _plain_tuple(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_plain_tuple(v) for v in value)
    return value


def from_mapping(
    cls: type[T],
    raw: Mapping[str, Any] | None,
    *,
    base: T | None = None,
    presets: Mapping[type, Mapping[str, Any]] | None = None,
    renamed: Mapping[str, str] | None = None,
    where: str | None = None,
) -> T:
    """``cls`` built from ``raw`` over ``base`` (default: ``cls``'s own defaults).

    - a nested dataclass field takes a mapping (overriding the field's default), an instance,
      ``None`` where the field allows it, or a string naming an entry of ``presets[type]``;
    - lists become tuples where the field is a tuple (items that are dataclasses built too);
    - ``renamed`` maps deprecated keys to their new names (a DeprecationWarning each; a
      deprecated key given wins over its new name, which a CLI's schema always holds);
    - unknown keys raise ValueError naming them, the known ones and ``where`` (the source).
    The dataclass's own ``__post_init__`` does the validation of values.
    """
    where = where or cls.__name__
    values = dict(raw or {})
    values.pop("hydra", None)
    for old, new in (renamed or {}).items():
        if old in values and values[old] is None:  # the CLI schema's placeholder, unset
            del values[old]
        elif old in values:
            warnings.warn(
                f"{where}: '{old}' is deprecated, use '{new}' (accepted for one release)",
                DeprecationWarning,
                stacklevel=2,
            )
            values[new] = values.pop(old)  # over the new key, which the CLI always carries
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    out = {}
    for name, value in values.items():
        tp = hints[name]
        sub = _dataclass_in(tp)
        label = f"{where}.{name}"
        if sub is not None and isinstance(value, str):
            table = (presets or {}).get(sub, {})
            if value not in table:
                raise ValueError(f"{label}: unknown preset {value!r}; known: {sorted(table)}")
            value = table[value]
        elif sub is not None and isinstance(value, Mapping):
            current = getattr(base, name) if base is not None else _default(known[name])
            current = current if isinstance(current, sub) else None
            value = from_mapping(sub, value, base=current, presets=presets, where=label)
        elif _is_tuple(tp) and isinstance(value, list | tuple):
            item = _dataclass_in(_tuple_items(tp))
            if item is not None:
                value = tuple(
                    v if isinstance(v, item) else from_mapping(item, v, where=f"{label}[{i}]")
                    for i, v in enumerate(value)
                )
            else:
                value = _plain_tuple(value)
        out[name] = value
    if base is not None:
        return dataclasses.replace(base, **out)
    return cls(**out)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def register_schema(
    config_name: str, schema: Mapping[str, Any], renamed: Mapping[str, str] | None = None
) -> None:
    """Register a CLI's defaults as the Hydra node ``<config_name>_defaults`` (its YAML file
    lists that node first in its ``defaults``); deprecated names in ``renamed`` get a null
    placeholder so the command line accepts them (:func:`from_mapping` maps them)."""
    from hydra.core.config_store import ConfigStore

    node = {**dict.fromkeys(renamed or {}), **schema}
    ConfigStore.instance().store(name=f"{config_name}_defaults", node=node)


def compose(
    config_name: str,
    overrides: list[str],
    schema: Mapping[str, Any],
    renamed: Mapping[str, str] | None = None,
) -> dict:
    """The plain mapping a CLI would get for ``overrides`` (``key=value`` strings), without
    running it: ``configs/<config_name>.yaml`` over ``schema``, for scripts and tests."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    register_schema(config_name, schema, renamed)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        raw = OmegaConf.to_container(hydra_compose(config_name, overrides), resolve=True)
    raw.pop("hydra", None)
    return raw


def run_cli(
    config_name: str,
    build: Callable[[dict], Any],
    run: Callable[[Any], Any],
    schema: Mapping[str, Any] | None = None,
    renamed: Mapping[str, str] | None = None,
) -> None:
    """Hydra entry point of one CLI: ``configs/<config_name>.yaml`` over ``schema`` (the
    dataclass defaults, registered as ``<config_name>_defaults``; YAML files list it first in
    their ``defaults``), then the command line; ``build(plain dict) -> config``, ``run(config)``."""
    import hydra
    from omegaconf import DictConfig, OmegaConf

    if schema is not None:
        register_schema(config_name, schema, renamed)

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)
    def _main(dcfg: DictConfig) -> None:
        raw = OmegaConf.to_container(dcfg, resolve=True)
        raw.pop("hydra", None)
        run(build(raw))

    _main()
