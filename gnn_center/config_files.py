r"""Config files: YAML, with ``include`` to share blocks between them,
and YAML values checked against the options' type hints.

.. code-block:: yaml

    # configs/full-cora.yaml
    include: common/full-baselines.yaml   # or a list of paths
    name: full-cora
    datasets: [cora]

``include`` takes a path or a list of paths, relative to the including
file. The included files are read first, in order, and merged: mappings
merge key by key at every level, any other value (a list included) is
replaced whole; later includes win over earlier ones and the including
file wins over all. Included files may include others; a cycle is an
error naming the chain. What comes out is validated as one config by
:func:`gnn_center.config.config_from_dict`.
"""
import math
import typing
from pathlib import Path
from typing import Any, Dict, List, Tuple

import yaml


class ConfigError(ValueError):
    r"""A config that cannot be used; the message names the file and the
    key."""


def reject_unknown_keys(raw: Dict[str, Any], valid, where) -> None:
    r"""A :class:`ConfigError` at the first key of ``raw`` not in ``valid``;
    ``where(key)`` names the file and the key."""
    unknown = [k for k in raw if k not in valid]
    if unknown:
        raise ConfigError(f"{where(unknown[0])}: unknown key; valid keys: "
                          f"{', '.join(valid)}")


def read_config_file(path: Path) -> Tuple[Dict[str, Any], List[Path]]:
    r"""The top-level mapping of the YAML file ``path`` merged over the
    files it includes, and the files included (directly or not)."""
    return _read_with_includes(Path(path), ())


def _read_with_includes(path: Path, chain: Tuple[Path, ...]
                        ) -> Tuple[Dict[str, Any], List[Path]]:
    r"""The mapping of ``path`` merged over those it includes, and the
    files included (directly or not)."""
    if path.resolve() in (p.resolve() for p in chain):
        cycle = " -> ".join(map(str, chain + (path,)))
        raise ConfigError(f"{chain[-1]}: include cycle: {cycle}")
    raw = _read_yaml(path)
    if "include" not in raw:
        return raw, []
    targets = raw.pop("include")
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list) or not targets:
        raise ConfigError(f"{path}: include: expected a path or a non-empty "
                          f"list of paths, got {targets!r}")
    merged: Dict[str, Any] = {}
    included: List[Path] = []
    for i, target in enumerate(targets):
        if not isinstance(target, str) or not target:
            raise ConfigError(f"{path}: include[{i}]: expected a path, got "
                              f"{target!r}")
        target = path.parent / target
        if not target.exists():
            raise ConfigError(f"{path}: include[{i}]: {target}: no such "
                              f"config file")
        values, nested = _read_with_includes(target, chain + (path,))
        merged = _deep_merge(merged, values)
        included += [target] + nested
    return _deep_merge(merged, raw), included


def _deep_merge(base: Dict[str, Any], over: Dict[str, Any]
                ) -> Dict[str, Any]:
    r"""``base`` updated by ``over``: mappings merge key by key, anything
    else in ``over`` replaces what ``base`` holds."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            value = _deep_merge(out[key], value)
        out[key] = value
    return out


def _read_yaml(path: Path) -> Dict[str, Any]:
    r"""The top-level mapping of a YAML file, or a :class:`ConfigError`
    saying why there is none."""
    if path.is_dir():
        found = ", ".join(sorted(p.name for p in path.glob("*.y*ml")))
        raise ConfigError(f"{path}: is a directory, not a config file; give "
                          f"one YAML file" + (f" (in it: {found})" if found
                                              else ""))
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark \
            else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}: malformed YAML{at}: {problem}") from None
    if raw is None:
        raise ConfigError(f"{path}: the file is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top "
                          f"level, got {type(raw).__name__}")
    return raw


def _type_name(tp) -> str:
    args = typing.get_args(tp)
    if args:
        return " or ".join(_type_name(a) for a in args)
    return "null" if tp is type(None) else tp.__name__


def coerce(value, tp, where: str):
    r"""``value`` checked against the type hint ``tp`` (``where`` names it
    in the error); YAML reads ``5e-4`` (no dot) as a
    string, so numbers in strings are accepted for float fields."""
    args = typing.get_args(tp)
    if args:  # Optional[...] / Union[...]
        for arg in args:
            try:
                return coerce(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got "
                          f"{value!r}")
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
