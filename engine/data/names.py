"""Dataset names as a grid lists them, and the readable part of a run id each one gets.

``imagefolder:PATH`` names a folder tree; its run ids start with the folder's
own name (``imagefolder:/data/tops`` -> ``tops__<backbone>__<strategy>``).
``imagefolder:NAME=PATH`` chooses the name instead: needed when two folders
have the same name, and for a relative folder whose name holds ``=`` (write
``./a=b`` then). Nothing here imports numpy or torch: the config parser uses it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

PREFIX = "imagefolder:"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class FolderSpec:
    name: str  # the run ids' name for it: given with NAME=, or the folder's own
    path: str  # as written (``~`` not yet expanded)
    given: bool  # NAME= was written


def is_folder(dataset: str) -> bool:
    return dataset.startswith(PREFIX)


def folder_spec(dataset: str) -> FolderSpec:
    """``imagefolder:NAME=PATH`` or ``imagefolder:PATH`` split into name and path."""
    spec = dataset[len(PREFIX):]
    head, eq, tail = spec.partition("=")
    if eq and head and "/" not in head and "\\" not in head and not head.startswith("~"):
        return FolderSpec(head, tail, True)
    return FolderSpec(default_name(spec), spec, False)


def default_name(path: str) -> str:
    """The folder's last path component made safe for a folder name ("folder" when there is none)."""
    base = os.path.basename(os.path.normpath(os.path.expanduser(path))) if path else ""
    if base in ("", ".", "..", os.sep):
        base = "folder"
    return (_UNSAFE.sub("-", base).strip("-.") or "folder")[:64]


def dataset_id(dataset: str) -> str:
    """The dataset part of a run id: a recipe's own name, or an image folder's name."""
    if is_folder(dataset):
        return folder_spec(dataset).name
    return _UNSAFE.sub("-", dataset).strip("-")


def name_problems(datasets: tuple[str, ...] | list[str]) -> str:
    """One line saying what is wrong with a grid's dataset names ("" when nothing is): a bad NAME=,
    a folder without a path, or two datasets whose run ids would be the same."""
    for d in datasets:
        if not is_folder(d):
            continue
        spec = folder_spec(d)
        if spec.given and not NAME_RE.fullmatch(spec.name):
            return (f"dataset {d!r}: NAME in imagefolder:NAME=PATH must be letters, digits, '.', '_' or '-' "
                    f"(at most 64, starting with a letter or digit)")
        if not spec.path.strip():
            return f"dataset {d!r}: no folder given; write imagefolder:/path/to/tree or imagefolder:NAME=/path"
    by_id: dict[str, str] = {}
    for d in datasets:
        key = dataset_id(d)
        other = by_id.setdefault(key, d)
        if other != d:
            folder = d if is_folder(d) else other
            return (f"datasets {other!r} and {d!r} would both be named {key!r} in run ids; name the folder "
                    f"with imagefolder:NAME=PATH, e.g. imagefolder:{key}-2={folder_spec(folder).path}")
    return ""
