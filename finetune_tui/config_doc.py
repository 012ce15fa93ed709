"""docs/CONFIG.md, generated from engine/config.py: every key, its type, default, allowed values and comment.

``python -m finetune_tui.config_doc > docs/CONFIG.md`` rewrites it; tests/test_cli_conventions.py fails
when the file and the code drift apart. The comments are the ones beside each field in
engine/config.py (read with ``tokenize``), so the code stays the one place a setting is described.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import sys
import tokenize
import typing
from typing import Any

from engine import config as cfg

HEADER = """# Configuration keys

Generated from `engine/config.py` by `python -m finetune_tui.config_doc > docs/CONFIG.md`;
a test fails when the two differ. Every key below can be set in a grid file (TOML), with
`--set KEY=VALUE` or, for some, a flag of `finetune-tui run`. Command line beats file beats
default; a command-line value also beats the file's `[overrides.NAME]` for the same key.
`finetune-tui run --show-config` prints the resolved grid as a TOML file that `--grid` reads back.
"""


def field_comments(cls: type) -> dict[str, str]:
    """``name: type = default  # comment`` -> {name: comment}, plus comment lines just above a field."""
    source = inspect.getsource(cls)
    comments: dict[str, str] = {}
    pending: list[str] = []
    line_name: dict[int, str] = {}
    for f in dataclasses.fields(cls):
        for i, line in enumerate(source.splitlines(), 1):
            if line.strip().startswith(f"{f.name}:"):
                line_name[i] = f.name
                break
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.COMMENT:
            continue
        text = tok.string.lstrip("#").strip()
        row = tok.start[0]
        if row in line_name:
            comments[line_name[row]] = " ".join(pending + [text]) if pending else text
            pending = []
        elif tok.line.strip().startswith("#"):
            pending.append(text)
            below = row + 1
            if below in line_name and line_name[below] not in comments:
                comments[line_name[below]] = " ".join(pending)
                pending = []
    return comments


def _type(typ: Any) -> str:
    if typing.get_origin(typ) is tuple:
        return "list of names"
    return {bool: "true/false", int: "integer", float: "number", str: "string"}.get(typ, str(typ))


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _allowed(key: str) -> str:
    parts = []
    if key in cfg.CHOICES:
        parts.append(", ".join(f"`{c}`" for c in cfg.CHOICES[key]()))
    if key in cfg.RANGES:
        parts.append(cfg.RANGES[key][1])
    return "; ".join(parts)


def _row(key: str, typ: Any, default: Any, comment: str) -> str:
    cells = [f"`{key}`", _type(typ), f"`{_value(default)}`", _allowed(key), comment.replace("|", "\\|")]
    return "| " + " | ".join(cells) + " |"


def render() -> str:
    head = "| key | type | default | allowed | meaning |\n|---|---|---|---|---|"
    grid_hints = typing.get_type_hints(cfg.GridConfig)
    grid_comments = field_comments(cfg.GridConfig)
    defaults = cfg.GridConfig()
    lines = [HEADER, "## Grid keys (top level of a grid file)", "", head]
    for key in cfg.GRID_KEYS:
        lines.append(_row(key, grid_hints[key], getattr(defaults, key), grid_comments.get(key, "")))
    lines += ["", "Per-name settings go in `[overrides.NAME]` tables, NAME a dataset, backbone or strategy of "
              "the grid, with `section.key = value` entries: " + grid_comments.get("overrides", "") + "."]
    for section, cls in cfg.SECTIONS.items():
        hints = typing.get_type_hints(cls)
        comments = field_comments(cls)
        lines += ["", f"## `[{section}]`", "", head]
        for f in dataclasses.fields(cls):
            key = f"{section}.{f.name}"
            comment = comments.get(f.name, "")
            if key in cfg.GRID_OWNED:
                comment = f"set by the grid's `{cfg.GRID_OWNED[key]}` list, not as a setting. {comment}"
            lines.append(_row(key, hints[f.name], getattr(cls(), f.name), comment))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
