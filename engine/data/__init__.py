"""The data layer: dataset recipes, source readers, the dataset cache and seeded, class-balanced splits.

``load_dataset(name)`` returns uint8 (N, C, H, W) tensors for train, val and
test; ``open_dataset(data_config, ...)`` is the trainer's way in: decoded once
into the dataset cache (``engine.data.cache``), splits as rows of it, read into
memory or streamed (``engine.data.stream``). ``check_dataset(name)`` fails
fast, before any run starts, when the source files are missing or images are
unreadable. Names are registry keys (``dataset_names()``) or
``imagefolder:[NAME=]/path/to/tree``. Importing this package imports neither
numpy nor torch until one of its functions is used (the config parser imports
``engine.data.names``).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DATASETS": "recipes", "DatasetRecipe": "recipes", "dataset_names": "recipes",
    "DataError": "errors", "UnknownDatasetError": "errors",
    "check_dataset": "load", "load_dataset": "load", "open_dataset": "load",
    "DatasetSplits": "splits", "Split": "splits",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
