"""Parsing of the small value languages used on the command line and in YAML: lengths, depths, key=value params."""
from __future__ import annotations

import math
import re

from harness.errors import UserError

MAX_LENGTH = 16 * 2**20  # tokens: the longest prompt longctx builds (past any model's reach today)
_LENGTH = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmM]?)\s*$", re.ASCII)


def parse_length(text: str) -> int:
    """'4k' → 4096 (k = 1024, m = 1024²), '1500' → 1500. Raises UserError on anything else."""
    m = _LENGTH.match(str(text))
    if not m:
        raise UserError(f"bad length {text!r}: use a token count such as 2048, 4k or 128k (k = 1024)")
    number, unit = float(m.group(1)), m.group(2).lower()
    value = number * {"": 1, "k": 1024, "m": 1024 * 1024}[unit]
    if value != int(value) or value <= 0:
        raise UserError(f"bad length {text!r}: it must be a positive whole number of tokens")
    if value > MAX_LENGTH:
        raise UserError(f"bad length {text!r}: longctx builds prompts of at most {MAX_LENGTH // 2**20}m tokens")
    return int(value)


def parse_lengths(text: str) -> list[int]:
    """'4k,8k,16k' → [4096, 8192, 16384], sorted and de-duplicated."""
    parts = [p for p in str(text).split(",") if p.strip()]
    if not parts:
        raise UserError("no lengths given: use e.g. --lengths 4k,8k")
    return sorted({parse_length(p) for p in parts})


def format_length(n: int) -> str:
    """4096 → '4k'; 1500 → '1500' (the inverse of parse_length for display)."""
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def parse_depths(text: str) -> list[float]:
    """'0.1,0.5,0.9' → [0.1, 0.5, 0.9]; each depth is a fraction of the haystack in [0, 1]."""
    out = []
    for p in str(text).split(","):
        if not p.strip():
            continue
        d = _ascii_number(p)
        if d is None:
            raise UserError(f"bad depth {p!r}: depths are fractions in [0, 1], e.g. 0.1,0.5,0.9")
        if not 0.0 <= d <= 1.0:
            raise UserError(f"bad depth {p!r}: depths are fractions in [0, 1]")
        out.append(d)
    if not out:
        raise UserError("no depths given: use e.g. --depths 0.1,0.5,0.9")
    return sorted(set(out))


_NUMBER = re.compile(r"^\s*[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\s*$", re.ASCII)


def _ascii_number(text: str) -> float | None:
    """A finite number written in ASCII digits, else None (no nan, inf, or other scripts' digits). A number too
    large for a float (1e400) is an error, not infinity."""
    if not _NUMBER.match(text):
        return None
    value = float(text)
    if not math.isfinite(value):
        raise UserError(f"bad value {text.strip()!r}: too large for a number (at most ~1.8e308)")
    return value


def parse_value(text: str):
    """'2' → 2, '2.5' → 2.5, 'true' → True, 'none' → None, '1,2.5' → (1, 2.5); other text stays a string. Numbers are ASCII and finite:
    'nan', 'inf' and non-ASCII digits are refused (they would pass float() and mean nothing)."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if "," in text:  # a list of numbers: '1,1.5,2' or '[1, 1.5, 2]' → (1, 1.5, 2)
        parts = text.strip().removeprefix("[").removesuffix("]").split(",")
        values = [parse_value(x) for x in parts]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return tuple(values)
        return text
    if re.fullmatch(r"\s*[-+]?[0-9]+\s*", text, re.ASCII):
        return int(text)
    if _ascii_number(text) is not None:
        return float(text)
    if low.strip(" +-") in ("nan", "inf", "infinity") or any(c.isdigit() for c in text) and \
            re.fullmatch(r"[\s\d.,eE+-]+", text):
        raise UserError(f"bad value {text!r}: numbers must be finite and written with ASCII digits")
    return text


def parse_params(items: tuple[str, ...] | list[str], what: str = "extension parameter",
                 example: str = "-E factor=2") -> dict:
    """('factor=2', 'beta_fast=32') → {'factor': 2, 'beta_fast': 32}."""
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"bad {what} {item!r}: use KEY=VALUE, e.g. {example}")
        if key.strip() in params:
            raise UserError(f"{what} {key.strip()!r} given twice; give it once")
        params[key.strip()] = parse_value(value)
    return params


def _fits(value, annotation: str) -> bool:
    """Whether a YAML/JSON value fits a dataclass field's annotation (as written: 'int', 'str | None',
    'tuple[int, ...]'); numbers must be finite, booleans are not numbers."""
    import math

    for kind in (a.strip() for a in annotation.split("|")):
        base = kind.split("[")[0]
        if base == "None" and value is None:
            return True
        if base == "bool" and isinstance(value, bool):
            return True
        if base == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if base == "float" and isinstance(value, (int, float)) and not isinstance(value, bool) and \
                math.isfinite(value):
            return True
        if base == "str" and isinstance(value, str):
            return True
        if base in ("tuple", "list") and isinstance(value, (list, tuple)):
            return True
    return False


def settings_of(cls) -> dict[str, str]:
    """A config dataclass's settings: field name → its annotation as written."""
    import dataclasses

    return {f.name: _annotation(f.type) for f in dataclasses.fields(cls)}


def _annotation(t) -> str:
    """A field's type as written ('int', 'str | None'), whether the module postponed its annotations or not."""
    import typing

    if isinstance(t, str):
        return t
    if t is type(None):
        return "None"
    if isinstance(t, type) and not typing.get_args(t):
        return t.__name__
    args = typing.get_args(t)
    if typing.get_origin(t) in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union)):
        return " | ".join(_annotation(a) for a in args)
    return str(t).replace("typing.", "")


def build_config(cls, values: dict, where: str = ""):
    """`cls(**values)` for a config dataclass, each key and type checked first: one line naming the key path
    (`where` + key) on an unknown key or a value of the wrong type; the class's own checks run after."""
    fields = settings_of(cls)
    for key, value in values.items():
        if key not in fields:
            raise UserError(f"{where}{key}: not a setting of this task; its settings: {', '.join(fields)}")
        if not _fits(value, fields[key]):
            raise UserError(f"{where}{key}: expected {fields[key]}, got {value!r}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return cls(**values)
