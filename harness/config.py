"""Parsing of the small value languages used on the command line and in YAML: lengths, depths, key=value params."""
from __future__ import annotations

import re

from harness.errors import UserError

_LENGTH = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")


def parse_length(text: str) -> int:
    """'4k' → 4096 (k = 1024, m = 1024²), '1500' → 1500. Raises UserError on anything else."""
    m = _LENGTH.match(str(text))
    if not m:
        raise UserError(f"bad length {text!r}: use a token count such as 2048, 4k or 128k (k = 1024)")
    number, unit = float(m.group(1)), m.group(2).lower()
    value = number * {"": 1, "k": 1024, "m": 1024 * 1024}[unit]
    if value != int(value) or value <= 0:
        raise UserError(f"bad length {text!r}: it must be a positive whole number of tokens")
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
        try:
            d = float(p)
        except ValueError:
            raise UserError(f"bad depth {p!r}: depths are fractions in [0, 1], e.g. 0.1,0.5,0.9") from None
        if not 0.0 <= d <= 1.0:
            raise UserError(f"bad depth {p!r}: depths are fractions in [0, 1]")
        out.append(d)
    if not out:
        raise UserError("no depths given: use e.g. --depths 0.1,0.5,0.9")
    return sorted(set(out))


def parse_value(text: str):
    """'2' → 2, '2.5' → 2.5, 'true' → True, 'none' → None, anything else stays a string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_params(items: tuple[str, ...] | list[str], what: str = "extension parameter",
                 example: str = "-E factor=2") -> dict:
    """('factor=2', 'beta_fast=32') → {'factor': 2, 'beta_fast': 32}."""
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"bad {what} {item!r}: use KEY=VALUE, e.g. {example}")
        params[key.strip()] = parse_value(value)
    return params
