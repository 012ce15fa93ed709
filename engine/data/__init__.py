"""The data layer: dataset recipes, source readers and seeded, class-balanced splits.

``load_dataset(name)`` returns uint8 (N, C, H, W) tensors for train, val and
test; ``check_dataset(name)`` fails fast, before any run starts, when the
source files are missing. Names are registry keys (``dataset_names()``) or
``imagefolder:/path/to/tree``. Importing this package doesn't import torch.
"""

from .errors import DataError, UnknownDatasetError
from .load import check_dataset, load_dataset
from .recipes import DATASETS, DatasetRecipe, dataset_names
from .splits import DatasetSplits, Split

__all__ = [
    "DATASETS", "DataError", "DatasetRecipe", "DatasetSplits", "Split", "UnknownDatasetError",
    "check_dataset", "dataset_names", "load_dataset",
]
