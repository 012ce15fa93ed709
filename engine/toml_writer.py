"""Write the small TOML a config needs: tables of strings, numbers, booleans and lists.

``tomllib`` reads TOML but the standard library has no writer; a grid's config
only holds scalars and lists of names, so a few lines do it (and a test reads
every output back with ``tomllib``).
"""

from __future__ import annotations

import math
import re
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def dumps(obj: dict[str, Any], comment: str = "") -> str:
    """``{"a": 1, "t": {"b": [..]}}`` -> ``a = 1`` then ``[t]`` tables (nested dicts become dotted headers)."""
    lines = [f"# {c}" if c else "#" for c in comment.splitlines()]
    _table(obj, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(obj: dict[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in obj.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in obj.items() if isinstance(v, dict)}
    # a table header is needed where the table holds values, or is empty (it must still exist)
    if path and (scalars or not tables):
        lines += ["", f"[{'.'.join(key(p) for p in path)}]"]
    lines += [f"{key(k)} = {value(v)}" for k, v in scalars.items()]
    for k, v in tables.items():
        _table(v, [*path, k], lines)


def key(k: str) -> str:
    return k if _BARE.match(k) else _string(k)


def value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)  # shortest repr that reads back to the same float, valid TOML
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    raise TypeError(f"can't write {type(v).__name__} {v!r} as TOML")


def _string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\t":
            out.append(ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:  # control characters must be escaped
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
