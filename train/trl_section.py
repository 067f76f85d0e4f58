"""The `trl:` section's values, checked against the types of TRL's GRPOConfig fields before anything is loaded.

GRPOConfig is a dataclass: it takes `adam_epsilon: abc` without a word, and torch fails on it only once the model
is loaded and the optimizer built. Here each value must fit its field's annotation (`float`, `int | None`,
`dict | str | None`, a `Literal`, an enum's values, lists of these); a number that YAML 1.1 read as a string
(`1e-3`) becomes the number it is. Names that are not GRPOConfig fields are left to the entrypoint's check, which
names the closest field.
"""

from __future__ import annotations

import enum
import functools
import types
import typing

from train.config import ConfigError, Origin


@functools.cache
def field_types() -> dict[str, object]:
    import dataclasses

    from trl import GRPOConfig

    hints = typing.get_type_hints(GRPOConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(GRPOConfig) if f.init}


def checked_trl(trl: dict, where: Origin) -> dict:
    """`trl` with each value checked against its GRPOConfig field's type (floats written as `1e-3` converted);
    a ConfigError names the key, where it was set and the type it needs."""
    types_ = field_types()
    out = {}
    for key, value in trl.items():
        tp = types_.get(key)
        if tp is not None and fits(tp, float) and isinstance(value, str):
            try:  # YAML 1.1 reads 1e-3 (no dot) as a string
                value = float(value)
            except ValueError:
                pass
        if tp is not None and not fits(tp, value=value):
            raise ConfigError(f"{where(f'trl.{key}')}: 'trl.{key}' must be {describe(tp)}, got {value!r} "
                              f"({type(value).__name__})")
        out[key] = value
    return out


_MISSING = object()


def fits(tp, kind: type | None = None, value=_MISSING) -> bool:
    """Does `value` fit the annotation `tp`? With `kind` instead of a value: does `tp` accept that type?

    >>> fits(float | None, value=None), fits(float, value="abc"), fits(dict | str | None, value=5)
    (True, False, False)
    >>> fits(list[str], value=["a"]), fits(typing.Literal["a", "b"], value="c"), fits(int | None, float)
    (True, False, False)
    """
    if value is _MISSING:
        return any(a is kind for a in _alternatives(tp))
    for a in _alternatives(tp):
        origin, args = typing.get_origin(a), typing.get_args(a)
        if a is typing.Any or (a is type(None) and value is None):
            return True
        if origin is typing.Literal and value in args:
            return True
        if a is bool and isinstance(value, bool):
            return True
        if a in (int, float) and isinstance(value, int | float) and not isinstance(value, bool):
            if a is float or isinstance(value, int):
                return True
        if a is str and isinstance(value, str):
            return True
        if isinstance(a, type) and issubclass(a, enum.Enum) and value in [m.value for m in a]:
            return True
        if (a is dict or origin is dict) and isinstance(value, dict):
            return True
        if (a is list or origin is list) and isinstance(value, list):
            return all(fits(args[0], value=v) for v in value) if args else True
        if origin is None and a not in (bool, int, float, str, dict, list, type(None)) and not (
                isinstance(a, type) and issubclass(a, enum.Enum)):
            return True  # a type this check does not know (an accelerate object): left to TRL
    return False


def describe(tp) -> str:
    """
    >>> describe(float | None), describe(dict | str | None)
    ('a number or null', 'a mapping or a string or null')
    """
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", dict: "a mapping",
             list: "a list", type(None): "null"}
    out = []
    for a in _alternatives(tp):
        origin = typing.get_origin(a)
        if origin is typing.Literal:
            out.append("one of " + ", ".join(map(repr, typing.get_args(a))))
        elif isinstance(a, type) and issubclass(a, enum.Enum):
            out.append("one of " + ", ".join(str(m.value) for m in a))
        else:
            out.append(names.get(origin or a, str(a)))
    return " or ".join(dict.fromkeys(out))


def _alternatives(tp) -> tuple:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return typing.get_args(tp)
    return (tp,)
